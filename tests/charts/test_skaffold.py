"""skaffold.yaml, checked structurally (no skaffold binary here) against the catalog and charts."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from services.kit import catalog
from tests.charts.conftest import ROOT, SKAFFOLD_FILE, UMBRELLA_CHART, app_container, render
from tests.support import helm

#: Go templates reject "-" and "/" in names; skaffold swaps them for "_" (docs: Templated Fields).
TEMPLATE_KEY = re.compile(r"\{\{\s*\.(IMAGE_(?:REPO|TAG|DIGEST)_[A-Za-z0-9_]+)\s*\}\}")


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SKAFFOLD_FILE.read_text())
    return config


@pytest.fixture(scope="module")
def release(skaffold) -> dict[str, Any]:
    [only] = skaffold["deploy"]["helm"]["releases"]
    return dict(only)


def _sanitized(image: str) -> str:
    return re.sub(r"[-/.:]", "_", image)


def test_schema_version_and_kind(skaffold):
    assert skaffold["apiVersion"].startswith("skaffold/v4beta")
    assert skaffold["kind"] == "Config"


def test_one_artifact_per_service_from_the_shared_dockerfile(skaffold):
    artifacts = skaffold["build"]["artifacts"]
    assert [a["image"] for a in artifacts] == [f"flotilla-{s.name}" for s in catalog.SERVICES]
    for artifact, service in zip(artifacts, catalog.SERVICES, strict=True):
        assert artifact["context"] == "."
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
        assert artifact["docker"]["buildArgs"] == {"SERVICE": service.name}


def test_release_deploys_the_umbrella_chart(release):
    assert (ROOT / release["chartPath"]).resolve() == UMBRELLA_CHART
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    assert release["namespace"] == "flotilla"
    assert release.get("skipBuildDependencies", False) is False, "the file:// subcharts must be built"


def test_image_overrides_match_artifacts_and_chart_values(skaffold, release):
    artifacts = {_sanitized(a["image"]) for a in skaffold["build"]["artifacts"]}
    templates: dict[str, str] = release["setValueTemplates"]
    umbrella = yaml.safe_load((UMBRELLA_CHART / "values.yaml").read_text())
    expected_keys = set()
    for service in catalog.SERVICES:
        name = _sanitized(f"flotilla-{service.name}")
        expected_keys |= {f"{service.name}.image.repository", f"{service.name}.image.tag"}
        assert templates[f"{service.name}.image.repository"] == f"{{{{.IMAGE_REPO_{name}}}}}"
        assert templates[f"{service.name}.image.tag"] == f"{{{{.IMAGE_TAG_{name}}}}}@{{{{.IMAGE_DIGEST_{name}}}}}"
        # The keys exist in the umbrella's values, so the override lands on a real value.
        assert set(umbrella[service.name]["image"]) >= {"repository", "tag"}
    assert set(templates) == expected_keys
    for template in templates.values():
        for key in TEMPLATE_KEY.findall(template):
            assert key.split("_", 2)[2] in artifacts, f"{key} names no artifact"


@pytest.mark.parametrize("digest", ["sha256:" + "b" * 64, ""], ids=["pushed", "local-build"])
def test_rendered_images_are_what_skaffold_built(skaffold, release, digest):
    """Substitute the templates as skaffold would and check every Deployment's image."""
    built = {_sanitized(a["image"]): (f"registry.local/{a['image']}", "v1-abc") for a in skaffold["build"]["artifacts"]}

    def substitute(template: str) -> str:
        def one(match: re.Match[str]) -> str:
            kind, artifact = match.group(1).split("_", 2)[1:]
            repo, tag = built[artifact]
            return {"REPO": repo, "TAG": tag, "DIGEST": digest}[kind]

        return TEMPLATE_KEY.sub(one, template)

    values: dict[str, Any] = {}
    for key, template in release["setValueTemplates"].items():
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = substitute(template)
    objects = render(UMBRELLA_CHART, values)
    for service in catalog.SERVICES:
        image = app_container(objects, f"flotilla-{service.name}")["image"]
        suffix = f"@{digest}" if digest else ""
        assert image == f"registry.local/flotilla-{service.name}:v1-abc{suffix}"


def test_port_forward_reaches_the_gateway_service(skaffold, release):
    [forward] = skaffold["portForward"]
    objects = render(UMBRELLA_CHART, release=release["name"])
    service = helm.find(objects, "Service", forward["resourceName"])
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "gateway"
    assert forward["resourceType"] == "service"
    assert forward["namespace"] == release["namespace"]
    assert forward["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert forward["localPort"] == catalog.GATEWAY.local_port


def _resolve_parent(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.strip("/").split("/")[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_dev_and_prod_profiles_patch_real_paths(skaffold):
    profiles = {p["name"]: p for p in skaffold["profiles"]}
    assert set(profiles) == {"dev", "prod"}
    assert {"command": "dev"} in profiles["dev"]["activation"]
    for profile in profiles.values():
        for patch in profile["patches"]:
            assert patch["op"] in {"add", "replace"}
            _resolve_parent(skaffold, patch["path"])  # raises when the path does not exist
    [dev_patch] = profiles["dev"]["patches"]
    assert dev_patch["path"] == "/deploy/helm/releases/0/valuesFiles"
    for values_file in dev_patch["value"]:
        assert (ROOT / values_file).is_file()
        helm.validate_values(UMBRELLA_CHART, yaml.safe_load((ROOT / values_file).read_text()))
    prod = {p["path"]: p["value"] for p in profiles["prod"]["patches"]}
    assert prod["/build/local/push"] is True
