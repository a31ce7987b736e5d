"""The static copies of the service list (charts, skaffold, k8s examples) equal the catalog.

`python -m services.kit.catalog_sync --write` makes them; these tests fail on drift and
prove the generator wires a new catalog entry everywhere, idempotently.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from services.kit import catalog, catalog_sync


def test_no_file_drifts_from_the_catalog() -> None:
    drift = catalog_sync.expected()
    assert not drift, f"run: python -m services.kit.catalog_sync --write ({', '.join(map(str, drift))})"


def test_check_mode_exits_nonzero_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(tmp_path)
    (root / "k8s/examples/users.yaml").unlink()
    assert catalog_sync.main(["--root", str(root)]) == 1
    assert "k8s/examples/users.yaml" in capsys.readouterr().out
    assert catalog_sync.main(["--root", str(root), "--write"]) == 0
    assert catalog_sync.main(["--root", str(root)]) == 0


def test_a_new_catalog_entry_is_wired_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(tmp_path)
    notes = catalog.ServiceInfo(name="notes", local_port=8005, factory="services.notes.app:create_app",
                                routes=("/api/v1/notes",), summary="notes of a user")
    monkeypatch.setattr(catalog, "SERVICES", (*catalog.SERVICES, notes))
    monkeypatch.setattr(catalog, "BACKENDS", (*catalog.BACKENDS, notes))
    catalog_sync.main(["--root", str(root), "--write"])
    assert catalog_sync.expected(root) == {}, "a second run changes nothing"

    skaffold = yaml.safe_load((root / "skaffold.yaml").read_text())
    artifact = {"image": "flotilla-notes", "context": ".",
                "docker": {"dockerfile": "Dockerfile", "target": "service", "buildArgs": {"SERVICE": "notes"}}}
    assert artifact in skaffold["build"]["artifacts"]
    templates = skaffold["deploy"]["helm"]["releases"][0]["setValueTemplates"]
    assert templates["notes.image.repository"] == "{{.IMAGE_REPO_flotilla_notes}}"
    chart = yaml.safe_load((root / "charts/flotilla/Chart.yaml").read_text())
    assert [d["alias"] for d in chart["dependencies"]] == [s.name for s in catalog.SERVICES]
    values = yaml.safe_load((root / "charts/flotilla/values.yaml").read_text())
    assert values["notes"] == {"serviceName": "notes", "image": {"repository": "flotilla-notes", "tag": ""}}
    assert values["gateway"]["networkPolicy"] == {"allowAnySource": True}, "hand-written blocks are kept"
    assert values["devServers"]["postgresql"]["databases"][-1] == "notes"
    dev = yaml.safe_load((root / "charts/flotilla/values-dev.yaml").read_text())
    assert dev["notes"]["database"]["url"].endswith(":5432/notes")
    assert "database" not in dev["gateway"]
    assert "notes" in json.loads((root / "charts/flotilla/values.schema.json").read_text())["properties"]
    schema = json.loads((root / "charts/service/values.schema.json").read_text())["properties"]
    assert schema["serviceName"]["enum"][-1] == "notes"
    assert "notes" in schema["upstreams"]["properties"]
    assert yaml.safe_load((root / "charts/service/values.yaml").read_text())["upstreams"]["notes"] == ""
    kustomization = yaml.safe_load((root / "k8s/examples/kustomization.yaml").read_text())
    assert kustomization["resources"][-1] == "notes.yaml"
    spec = yaml.safe_load((root / "k8s/examples/notes.yaml").read_text())
    assert spec["spec"]["redis"]["keyPrefix"] == "notes:"
    assert spec["spec"]["database"]["name"] == "notes"


def test_the_example_spec_of_an_existing_service_is_what_the_generator_makes() -> None:
    # New services' examples come from the generator; it agrees with the hand-made ones.
    for service in catalog.SERVICES:
        path = catalog_sync.ROOT / "k8s/examples" / f"{service.name}.yaml"
        assert yaml.safe_load(catalog_sync.example_spec(service)) == yaml.safe_load(path.read_text()), service.name


def test_gateway_has_an_upstream_setting_per_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.gateway.settings import GatewaySettings

    monkeypatch.setenv("GATEWAY_TASKS_URL", "http://tasks.example:8000/")
    settings = GatewaySettings()
    for backend in catalog.BACKENDS:
        assert f"{backend.name}_url" in GatewaySettings.model_fields
    assert settings.upstream_url("tasks") == "http://tasks.example:8000"
    assert settings.upstream_url("users") == f"http://127.0.0.1:{catalog.USERS.local_port}"
    assert GatewaySettings(data_url="http://d:1").upstream_url("data") == "http://d:1"


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for relative in [*catalog_sync.REWRITERS, *(f"k8s/examples/{s.name}.yaml" for s in catalog.SERVICES)]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(catalog_sync.ROOT / relative, root / relative)
    return root


