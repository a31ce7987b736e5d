"""tests/support/helm.py itself: it must catch what it claims to catch."""

from __future__ import annotations

import copy

import helm_python
import pytest

from tests.charts.conftest import CRD_FILE, SERVICE_CHART, UMBRELLA_CHART, render
from tests.support import helm


def test_validate_reports_unknown_fields_wrong_types_and_unknown_kinds():
    deployment = copy.deepcopy(helm.find(render(SERVICE_CHART), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    deployment["spec"]["revisionHistoryLimit"] = "five"
    old_pdb = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}}
    with pytest.raises(helm.ManifestError) as caught:
        helm.validate([deployment, old_pdb, deployment], "1.30")
    text = "\n".join(caught.value.problems)
    assert "readinesProbe" in text
    assert "revisionHistoryLimit" in text
    assert "no schema for policy/v1beta1 PodDisruptionBudget" in text
    assert "defined twice" in text


def test_crd_schemas_reject_unknown_spec_fields_but_not_metadata():
    schemas = helm.crd_schemas(CRD_FILE)
    spec = copy.deepcopy(helm.find(render(SERVICE_CHART), "ServiceSpec"))
    spec["metadata"]["annotations"] = {"anything": "goes"}
    helm.validate([spec], "1.30", custom_schemas=schemas)
    spec["spec"]["database"]["retention"] = "forever"
    with pytest.raises(helm.ManifestError, match="retention"):
        helm.validate([spec], "1.30", custom_schemas=schemas)


def test_render_passes_capabilities_and_release():
    files = helm.render_files(
        SERVICE_CHART,
        {"serviceMonitor": {"enabled": True}},
        api_versions=["monitoring.coreos.com/v1"],
        release="r1",
        namespace="ns1",
    )
    assert "kind: ServiceMonitor" in files["service/templates/servicemonitor.yaml"]
    deployment = helm.find(helm.render(SERVICE_CHART, release="r1", namespace="ns1"), "Deployment")
    assert deployment["metadata"]["name"] == "r1-tasks"
    assert deployment["metadata"]["namespace"] == "ns1"


def test_lint_reports_problems_and_umbrella_dependencies_are_staged(tmp_path):
    broken = tmp_path / "broken"
    (broken / "templates").mkdir(parents=True)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (broken / "values.yaml").write_text("{}\n")
    (broken / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.x }\n"
    )
    assert any(f.severity == "error" for f in helm.lint(broken))
    # The umbrella renders from a staged copy; the working tree gets no charts/ folder.
    assert helm.render(UMBRELLA_CHART)
    assert not (UMBRELLA_CHART / "charts").exists()


def test_validate_values_sees_subchart_schemas_through_aliases():
    helm.validate_values(UMBRELLA_CHART, {"tasks": {"replicaCount": 3}})
    with pytest.raises(helm_python.HelmValuesError, match="tasks"):
        helm.validate_values(UMBRELLA_CHART, {"tasks": {"replicaCount": -1}})
