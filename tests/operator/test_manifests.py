"""The operator chart, the plain k8s/ manifests and the example ServiceSpecs."""

from __future__ import annotations

from pathlib import Path

import helm_python
import pytest
import yaml
from flotilla_operator import crd, dashboards, spec
from flotilla_operator.settings import OperatorSettings

from services.kit import catalog
from tests.operator import manifests
from tests.support import helm

ROOT = manifests.ROOT
MONITORING = [("monitoring.coreos.com/v1", "ServiceMonitor")]


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_plain_manifests_equal_the_chart() -> None:
    assert _load(manifests.PLAIN) == manifests.rendered(), "run: python -m tests.operator.manifests"


def test_kustomization_lists_existing_files() -> None:
    for directory in (ROOT / "k8s", ROOT / "k8s" / "examples"):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for resource in kustomization["resources"]:
            assert (directory / resource).is_file(), resource
    assert "crd/servicespecs.flotilla.dev.yaml" in yaml.safe_load(
        (ROOT / "k8s" / "kustomization.yaml").read_text())["resources"]


@pytest.mark.parametrize("values", [
    {},
    {"watchNamespaces": ["flotilla", "team-a"]},
    {"clusterWide": True, "peering": {"enabled": True}, "replicaCount": 2},
    {"peering": {"enabled": True}, "replicaCount": 2, "metrics": {"serviceMonitor": {"enabled": True}}},
])
def test_chart_renders_valid_objects(values: dict) -> None:
    objects = helm.render(manifests.CHART, values)
    assert helm.lint(manifests.CHART, values) == []
    # The peering objects against the chart's own peering CRDs.
    peering = helm.crd_schemas(manifests.CHART / "crds" / "kopf-peering.yaml")
    for version in ("1.27", "1.30"):
        helm.validate(objects, version, custom_schemas=peering, allow_unknown_kinds=MONITORING)


def test_replicas_need_peering() -> None:
    with pytest.raises(Exception, match="peering"):
        helm.render(manifests.CHART, {"replicaCount": 2})


def test_values_schema_rejects_nonsense() -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - the helper's error type is its own
        helm.validate_values(manifests.CHART, {"replicaCount": "two"})


def test_deployment_is_locked_down() -> None:
    deployment = helm.find(helm.render(manifests.CHART, {}), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--standalone" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    env = {e["name"]: e for e in container["env"]}
    assert env["FLOTILLA_OPERATOR_POSTGRES_ADMIN_DSN"]["valueFrom"]["secretKeyRef"]["name"]
    assert env["FLOTILLA_OPERATOR_REDIS_ADMIN_URL"]["valueFrom"]["secretKeyRef"]["name"]


def test_rbac_is_split_and_least_privilege() -> None:
    """The verbs themselves are compared with real calls in test_rbac.py; here the shape."""
    for values, kind in (({}, "Role"), ({"clusterWide": True}, "ClusterRole")):
        objects = helm.render(manifests.CHART, values)
        framework = helm.find(objects, kind, "flotilla-flotilla-operator-framework")
        application = helm.find(objects, kind, "flotilla-flotilla-operator-application")
        for role in (framework, application):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"]
                assert "*" not in rule["resources"]
        granted = {(g, r): set(rule["verbs"]) for rule in application["rules"]
                   for g in rule["apiGroups"] for r in rule["resources"]}
        assert granted[("", "secrets")] == {"get", "create", "patch", "delete"}
        assert "list" not in granted[("", "secrets")]  # reads only the Secrets it names
        assert granted[("flotilla.dev", "servicespecs/status")] == {"patch"}
    scoped = helm.render(manifests.CHART, {"watchNamespaces": ["team-a"]})
    assert not helm.find_all(scoped, "ClusterRole")
    assert helm.find(scoped, "Role", "flotilla-flotilla-operator-application")["metadata"]["namespace"] == "team-a"
    peering = helm.render(manifests.CHART, {"peering": {"enabled": True}, "replicaCount": 2})
    rules = helm.find(peering, "Role", "flotilla-flotilla-operator-framework")["rules"]
    assert {"kopfpeerings"} in [set(rule["resources"]) for rule in rules], "namespaced peering, where kopf looks"


def test_chart_ships_the_crd() -> None:
    copy = ROOT / "charts" / "flotilla-operator" / "crds" / f"{crd.NAME}.yaml"
    assert copy.read_text() == crd.source_text()


def test_examples_cover_every_service_and_pass_the_schema() -> None:
    examples = {p.stem: _load(p)[0] for p in (ROOT / "k8s" / "examples").glob("*.yaml")
                if p.name != "kustomization.yaml"}
    assert set(examples) == {s.name for s in catalog.SERVICES}
    for name, obj in examples.items():
        assert spec.schema_errors(obj) == [], name
        assert spec.parse(obj).redis.key_prefix == f"{name}:"
        assert spec.parse(obj).database.enabled == catalog.by_name(name).has_database


def _operator_settings(objects: list[dict], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """The settings the operator would read from the Deployment's plain env values."""
    container = helm.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    return OperatorSettings()


def test_monitoring_defaults_are_what_kube_prometheus_stack_selects(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = helm.render(manifests.CHART, {"metrics": {"serviceMonitor": {"enabled": True}}})
    assert _operator_settings(objects, monkeypatch).monitoring() == dashboards.Monitoring()
    assert dashboards.Monitoring().monitor_labels == {"release": "kube-prometheus-stack"}
    own_monitor = helm.find(objects, "ServiceMonitor")
    assert own_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_monitoring_values_reach_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"monitoring": {"labels": {"release": "prom", "example.com/team": "platform"},
                             "dashboards": {"labels": {"grafana_dashboard": "yes"},
                                            "folderAnnotation": "", "folder": "Platform"}},
              "metrics": {"serviceMonitor": {"enabled": True}}}
    assert helm.lint(manifests.CHART, values) == []
    objects = helm.render(manifests.CHART, values)
    assert _operator_settings(objects, monkeypatch).monitoring() == dashboards.Monitoring(
        monitor_labels={"release": "prom", "example.com/team": "platform"},
        dashboard_labels={"grafana_dashboard": "yes"}, folder_annotation="", folder="Platform")
    own_monitor = helm.find(objects, "ServiceMonitor")
    assert own_monitor["metadata"]["labels"]["release"] == "prom"
    assert own_monitor["metadata"]["labels"]["example.com/team"] == "platform"
    with pytest.raises(helm_python.HelmValuesError, match="bad key"):
        helm.validate_values(manifests.CHART, {"monitoring": {"labels": {"bad key": "x"}}})


@pytest.mark.parametrize(("image", "expected"), [
    ({}, "flotilla-operator:0.1.0"),
    ({"registry": "ghcr.io/acme", "tag": "1.2.0"}, "ghcr.io/acme/flotilla-operator:1.2.0"),
    ({"tag": "1.2.0@sha256:" + "a" * 64}, "flotilla-operator:1.2.0@sha256:" + "a" * 64),
    ({"tag": "1.2.0@"}, "flotilla-operator:1.2.0"),
    ({"registry": "ghcr.io/acme", "digest": "sha256:" + "b" * 64}, "ghcr.io/acme/flotilla-operator@sha256:" + "b" * 64),
])
def test_image_registry_tag_and_digest_like_the_service_chart(image: dict, expected: str) -> None:
    deployment = helm.find(helm.render(manifests.CHART, {"image": image}), "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == expected
    assert "@" not in deployment["metadata"]["labels"]["app.kubernetes.io/version"]
