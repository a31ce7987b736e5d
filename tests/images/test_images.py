"""The images, really built and really run (issue 16 items 1 and 5): `make images` under pytest.

Builds every image (the five services of services/kit/catalog.py and the operator; each
further service image costs seconds, only its last layers differ) with podman and
smoke-tests each as the charts run it: UID 10001, read-only root with a tmpfs /tmp only,
every capability dropped, health endpoints answer 200, SIGTERM ends the container within
the grace period. FLOTILLA_TEST_IMAGES="tasks operator" narrows the set.

It skips, saying why, only where this machine cannot run podman (conftest.py). Build
artefacts (the Debian stand-in base, the layer cache) stay in $FLOTILLA_IMAGES_HOME
(default ~/.cache/flotilla-images; the script reads it from the environment passed on here),
so later runs on the same machine rebuild only what changed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from services.kit import catalog

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "images.sh"
IMAGES = os.environ.get("FLOTILLA_TEST_IMAGES", " ".join([*(s.name for s in catalog.SERVICES), "operator"])).split()

pytestmark = [pytest.mark.images, pytest.mark.slow]


def _script(*args: str, timeout: int, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nice", "-n", "10", "bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def built_images(podman_can_run: None) -> list[str]:
    # Installs podman & co. when missing (root), builds the base when missing, then the images.
    result = _script(*IMAGES, timeout=1500, FLOTILLA_IMAGES_SMOKE="0")
    assert result.returncode == 0, f"scripts/images.sh {' '.join(IMAGES)} failed:\n{result.stderr[-4000:]}"
    return IMAGES


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("image", IMAGES)
def test_image_builds_and_runs_as_the_chart_runs_it(built_images, image):
    result = _script(image, timeout=300, FLOTILLA_IMAGES_BUILD="0")
    assert result.returncode == 0, f"smoke test of flotilla-{image} failed:\n{result.stderr[-4000:]}"
    assert f"smoke ok: flotilla-{image}" in result.stderr
