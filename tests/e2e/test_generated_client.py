"""A typed client generated from the gateway's /openapi.json (as a newcomer's frontend or
script would make one) drives the register -> login -> create -> list flow on a running stack.

It proves more than that the document validates: operation ids become the method names
(``tasks_create_task``), every schema becomes a model, and every documented error status
parses as the one error shape.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from services.kit import catalog
from services.launcher import Stack
from tests.e2e.conftest import PASSWORD

PACKAGE = "flotilla_client"


def _generator() -> str:
    found = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert found, "openapi-python-client is in the dev extras: pip install -e '.[dev]'"
    return found


@pytest.fixture
def generated_client(embedded_stack: Stack, tmp_path: Path) -> Iterator[dict[str, ModuleType]]:
    document = httpx.get(f"{embedded_stack.url(catalog.GATEWAY)}/openapi.json", timeout=30).json()
    assert document["x-flotilla-missing-services"] == []
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    config = tmp_path / "config.yaml"
    # No post hooks: the generator would run ruff from PATH on the output (offline, nothing else needed).
    config.write_text(f"package_name_override: {PACKAGE}\nproject_name_override: flotilla-client\npost_hooks: []\n")
    generated = subprocess.run(
        [_generator(), "generate", "--path", str(spec), "--output-path", str(tmp_path / PACKAGE), "--meta", "none",
         "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        names = ["client", "models", "api.auth.auth_register", "api.auth.auth_login",
                 "api.tasks.tasks_create_task", "api.tasks.tasks_list_tasks"]
        yield {name: importlib.import_module(f"{PACKAGE}.{name}") for name in names}
    finally:
        sys.path.remove(str(tmp_path))
        for module in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[module]


def test_a_generated_client_registers_logs_in_and_manages_tasks(
    embedded_stack: Stack, generated_client: dict[str, ModuleType]
) -> None:
    client_module, models = generated_client["client"], generated_client["models"]
    api: dict[str, Any] = generated_client
    base_url = embedded_stack.url(catalog.GATEWAY)
    email = f"client-{uuid.uuid4().hex[:10]}@example.com"

    with client_module.Client(base_url=base_url, timeout=httpx.Timeout(30)) as anonymous:
        registered = api["api.auth.auth_register"].sync_detailed(
            client=anonymous, body=models.Registration(email=email, password=PASSWORD))
        assert registered.status_code == 201
        assert isinstance(registered.parsed, models.UserPublic)
        assert registered.parsed.email == email

        again = api["api.auth.auth_register"].sync_detailed(
            client=anonymous, body=models.Registration(email=email, password=PASSWORD))
        assert again.status_code == 409
        assert isinstance(again.parsed, models.Error)  # a documented error status, parsed as the error shape
        assert again.parsed.error_code

        tokens = api["api.auth.auth_login"].sync(client=anonymous,
                                                 body=models.Credentials(email=email, password=PASSWORD))
        assert isinstance(tokens, models.TokenPair)

        refused = api["api.tasks.tasks_list_tasks"].sync_detailed(client=anonymous)
        assert refused.status_code == 401
        assert isinstance(refused.parsed, models.Error)

    with client_module.AuthenticatedClient(base_url=base_url, token=tokens.access_token,
                                           timeout=httpx.Timeout(30)) as client:
        created = api["api.tasks.tasks_create_task"].sync(
            client=client, body=models.TaskCreate(title="Ship it", priority=models.Priority.HIGH))
        assert isinstance(created, models.TaskPublic)
        assert created.status == models.Status.TODO

        page = api["api.tasks.tasks_list_tasks"].sync(client=client)
        assert isinstance(page, models.TasksPublic)
        assert [(task.id, task.title, task.priority) for task in page.data] == \
            [(created.id, "Ship it", models.Priority.HIGH)]
        assert page.count == 1
