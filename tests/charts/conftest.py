"""Shared pieces of the chart tests: paths, Kubernetes versions, the CRD schema, renders."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from services.kit import catalog
from tests.support import helm

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CHART = ROOT / "charts" / "service"
UMBRELLA_CHART = ROOT / "charts" / "flotilla"
CRD_FILE = ROOT / "operator" / "flotilla_operator" / "crd.yaml"
SKAFFOLD_FILE = ROOT / "skaffold.yaml"
DOCKERFILE = ROOT / "Dockerfile"

#: ServiceMonitor's schema would come from the Prometheus Operator's CRDs, HTTPRoute's
#: from the Gateway API's, neither vendored here; their fields are asserted by hand in
#: the tests instead.
UNKNOWN_OK = (("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "HTTPRoute"))


def _oldest_supported() -> str:
    """The lowest Kubernetes version the charts claim (Chart.yaml kubeVersion >=x.y)."""
    constraint = yaml.safe_load((SERVICE_CHART / "Chart.yaml").read_text())["kubeVersion"]
    floor = Version(constraint.removeprefix(">=").split("-")[0])
    return f"{floor.major}.{floor.minor}"


OLDEST_KUBE = _oldest_supported()
LATEST_KUBE = ".".join(helm.kube_versions()[-1].split(".")[:2])
KUBE_VERSIONS = (OLDEST_KUBE, LATEST_KUBE)


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    return helm.crd_schemas(CRD_FILE) if CRD_FILE.exists() else {}


def validate(objects: list[dict[str, Any]], kube_version: str) -> None:
    """Validate built-in kinds strictly and ServiceSpecs against the operator's CRD."""
    schemas = crd_schemas()
    unknown_ok: tuple[tuple[str, str], ...] = UNKNOWN_OK
    if not schemas:
        # The CRD belongs to the operator's issue; until it exists only ServiceSpec's
        # schema check is skipped, every built-in kind is still validated.
        unknown_ok += (("flotilla.dev/v1alpha1", "ServiceSpec"),)
    helm.validate(objects, kube_version, custom_schemas=schemas, allow_unknown_kinds=unknown_ok)


@cache
def _render_cached(
    chart: str, values_json: str, api_versions: tuple[str, ...], kube_version: str | None, release: str
) -> str:
    objects = helm.render(
        chart, json.loads(values_json), api_versions=api_versions, kube_version=kube_version, release=release
    )
    return json.dumps(objects)


def render(
    chart: Path,
    values: Mapping[str, Any] | None = None,
    *,
    api_versions: tuple[str, ...] = (),
    kube_version: str | None = None,
    release: str = helm.DEFAULT_RELEASE,
) -> list[dict[str, Any]]:
    """Rendered objects, memoised per argument set (each caller gets its own copy)."""
    cached = _render_cached(str(chart), json.dumps(values or {}, sort_keys=True), api_versions, kube_version, release)
    return copy.deepcopy(json.loads(cached))


def umbrella_values() -> dict[str, Any]:
    return yaml.safe_load((UMBRELLA_CHART / "values.yaml").read_text())


def dev_values() -> dict[str, Any]:
    return yaml.safe_load((UMBRELLA_CHART / "values-dev.yaml").read_text())


def service_values(name: str) -> dict[str, Any]:
    """What the umbrella chart passes to charts/service for ``name``."""
    return copy.deepcopy(umbrella_values()[name])


def pod_spec(objects: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = helm.find(objects, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def app_container(objects: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    """The service's own container: always the first (values' sidecars come after it)."""
    containers = pod_spec(objects, name)["containers"]
    container: dict[str, Any] = containers[0]
    assert container["args"][:2] == ["serve", container["name"]], "the first container is not the service"
    return container


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels/matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


SERVICE_NAMES = tuple(s.name for s in catalog.SERVICES)


@pytest.fixture(params=KUBE_VERSIONS)
def kube_version(request: pytest.FixtureRequest) -> str:
    version: str = request.param
    return version
