"""`flotilla new-service`, end to end in a scratch copy of the repository.

The copy gets a new service, then proves what the golden path promises: the catalog's
copies are regenerated (no drift), `flotilla up` serves it through the gateway (401
without a token; register, log in, create, list), the umbrella chart renders its
Deployment, Service, HPA, PDB and ServiceSpec, lint and the
type checker stay clean, and its own generated tests pass (SQLite and PostgreSQL/Redis,
and routed through the gateway: 401 without a token, 200 with one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.kit.catalog_sync import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(280)]

BIN = Path(sys.executable).parent


def _scratch_copy(tmp_path: Path) -> Path:
    """The repository's tracked and new (not ignored) files, as they are now."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    root = tmp_path / "repo"
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(source.read_bytes())
    return root


def _run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # `python -m` puts the scratch copy first on sys.path: its services package, not this one.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_new_service_is_wired_everywhere_and_its_tests_pass(tmp_path: Path) -> None:
    root = _scratch_copy(tmp_path)
    python = sys.executable

    made = _run(root, python, "-m", "services.cli", "new-service", "notes", "--summary", "notes of a user")
    assert made.returncode == 0, made.stderr
    assert "created: services/notes/routes.py" in made.stdout
    assert "created: tests/services/test_notes_api.py" in made.stdout
    assert "updated: services/kit/catalog.py" in made.stdout

    again = _run(root, python, "-m", "services.cli", "new-service", "notes")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == ["error: service 'notes' already exists (services/kit/catalog.py)"]

    listed = _run(root, python, "-m", "services.cli", "services")  # what `flotilla up` starts
    notes = next(line for line in listed.stdout.splitlines() if line.startswith("notes "))
    assert ":8005 :9005  /api/v1/notes" in notes, notes
    assert "not installed" not in notes

    drift = _run(root, python, "-m", "services.kit.catalog_sync")
    assert drift.returncode == 0, drift.stdout

    lint = _run(root, str(BIN / "ruff"), "check", "services/notes", "tests/services/test_notes_api.py",
                "services/kit/catalog.py")
    assert lint.returncode == 0, lint.stdout
    types = _run(root, str(BIN / "mypy"), "services/notes", "services/gateway")
    assert types.returncode == 0, types.stdout

    tests = _run(root, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                 "tests/services/test_notes_api.py", "tests/test_catalog_sync.py",
                 "tests/charts/test_umbrella_chart.py", "tests/charts/test_skaffold.py",
                 "tests/charts/test_service_chart.py", "-k", "not lint_strict", timeout=240)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "test_the_gateway_routes_it_401_without_a_token_200_with_one" not in tests.stdout  # passed, not listed

    up = _run(root, python, "-c", _STACK_UP, str(tmp_path / "stack"), timeout=150)
    assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
    assert up.stdout.split() == ["401", "201", "200", "1"], up.stdout

    rendered = _run(root, python, "-c", _RENDER_NOTES)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceSpec"} <= set(
        rendered.stdout.split()), rendered.stdout


def test_a_bad_name_changes_nothing(tmp_path: Path) -> None:
    root = _scratch_copy(tmp_path)
    before = (root / "services/kit/catalog.py").read_text()
    made = _run(root, sys.executable, "-m", "services.cli", "new-service", "my-notes")
    assert made.returncode == 1
    assert len(made.stderr.strip().splitlines()) == 1
    assert "bad service name 'my-notes'" in made.stderr
    assert (root / "services/kit/catalog.py").read_text() == before
    assert not (root / "services/my-notes").exists()


#: `flotilla up` (every catalog service, embedded databases) serves the new resource through
#: the gateway: 401 without a token; with a real login, create then list.
_STACK_UP = """
import sys
from pathlib import Path
from services.kit import catalog
from services.launcher import Stack
from tests.support.stack import SHARED_STACK_ENV, bearer, free_port_offset, gateway, register_and_login
stack = Stack(data_dir=Path(sys.argv[1]), port_offset=free_port_offset(), extra_env=SHARED_STACK_ENV)
assert "notes" in [s.name for s in catalog.BACKENDS]
with stack.running(timeout=90), gateway(stack) as client:
    print(client.get("/api/v1/notes").status_code)
    headers = bearer(register_and_login(client, "new-service@example.com"))
    print(client.post("/api/v1/notes", json={"title": "first"}, headers=headers).status_code)
    listed = client.get("/api/v1/notes", headers=headers)
    print(listed.status_code, len(listed.json()["items"]))
"""

#: The kinds the umbrella chart renders for the new service (production defaults).
_RENDER_NOTES = """
from tests.charts.conftest import UMBRELLA_CHART, render
objects = render(UMBRELLA_CHART, {})
kinds = sorted({o["kind"] for o in objects if o["metadata"]["name"] in ("flotilla-notes", "notes")})
print(*kinds)
"""
