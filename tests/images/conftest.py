"""What the image tests share: whether podman can run containers on this machine at all."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IMAGES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "images.sh"


@pytest.fixture(scope="session")
def podman_can_run() -> None:
    """Skip, saying why, only where podman cannot run here; scripts/images.sh installs it as root."""
    if shutil.which("podman") is None:
        if os.geteuid() != 0:
            pytest.skip("podman is not installed and this user cannot install it (make images needs root for apt-get)")
        return  # scripts/images.sh installs it on first use
    check = subprocess.run(["bash", str(IMAGES_SCRIPT), "--check"], capture_output=True, text=True, timeout=120,
                           check=False)
    if check.returncode != 0:
        pytest.skip(f"podman cannot run on this machine: {check.stdout.strip()} {check.stderr.strip()[-500:]}")
