"""`flotilla dashboards SERVICE` and `flotilla rules [SERVICE...]`: what the operator
generates, printed for Grafana and Prometheus users without a cluster (issue 17, item 5)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_operator import dashboards, spec
from typer.testing import CliRunner

from services.cli import app
from services.kit import catalog
from tests.support.prometheus import promtool_check_rules

runner = CliRunner()


def test_dashboards_prints_the_generated_grafana_json() -> None:
    result = runner.invoke(app, ["dashboards", "tasks", "--namespace", "prod", "--availability", "99.5"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    expected = spec.parse({"metadata": {"name": "tasks", "namespace": "prod"},
                           "spec": {"dashboards": {"slo": {"availability": 99.5}}}})
    assert board == json.loads(json.dumps(dashboards.dashboard(expected)))
    assert board["editable"] is True


def test_dashboards_as_the_configmap_the_grafana_sidecar_loads() -> None:
    result = runner.invoke(app, ["dashboards", "data", "--kubernetes"])
    assert result.exit_code == 0, result.output
    configmap = json.loads(result.stdout)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_rules_of_every_service_is_one_file_promtool_accepts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0, result.output
    groups = yaml.safe_load(result.stdout)["groups"]
    assert {r["labels"]["service"] for g in groups for r in g["rules"]} == {
        *(s.name for s in catalog.SERVICES), "operator"}
    path = tmp_path / "rules.yaml"
    path.write_text(result.stdout)
    checked = promtool_check_rules(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_operators_own_dashboard_and_alerts() -> None:
    board = json.loads(runner.invoke(app, ["dashboards", "operator", "--namespace", "ops"]).stdout)
    assert board == json.loads(json.dumps(dashboards.operator_dashboard("ops")))
    groups = yaml.safe_load(runner.invoke(app, ["rules", "operator"]).stdout)["groups"]
    assert groups == dashboards.operator_rule_groups()


def test_rules_as_prometheusrule_objects() -> None:
    result = runner.invoke(app, ["rules", "tasks", "users", "--kubernetes"])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    assert [(o["kind"], o["metadata"]["labels"]["app.kubernetes.io/name"]) for o in objects] == [
        ("PrometheusRule", "tasks"), ("PrometheusRule", "users")]


def test_a_bad_name_is_one_line_and_exit_1() -> None:
    result = runner.invoke(app, ["dashboards", "Not A Name"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: Not A Name: ")


def test_without_the_operator_package_one_line_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_operator(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("flotilla_operator"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_operator)
    for command in (["dashboards", "tasks"], ["rules", "tasks"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [
            "error: the operator package (flotilla_operator) is not installed; "
            "install Flotilla from source: pip install -e ."]
