"""Dashboards and rules: real metric names, valid PromQL (promtool), SLO arithmetic."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_operator import dashboards, spec
from flotilla_operator.settings import OperatorSettings

from services.kit import metric_names
from tests.support.prometheus import promtool_check_rules

SPEC = spec.parse({"metadata": {"name": "tasks", "namespace": "flotilla"},
                   "spec": {"dashboards": {"slo": {"availability": 99.5, "latencyP95Ms": 250}}}})
IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
FUNCTIONS_AND_KEYWORDS = {"rate", "sum", "by", "histogram_quantile", "min", "max", "count", "scalar",
                          "avg_over_time", "and", "or", "increase"}


def _recorded() -> set[str]:
    return {r["record"] for g in dashboards.rule_groups(SPEC) for r in g["rules"] if "record" in r}


def _metrics_in(expr: str) -> set[str]:
    names = set(IDENTIFIER.findall(expr)) - FUNCTIONS_AND_KEYWORDS
    return {re.sub(r"_(bucket|count|sum)$", "", n) if not n.startswith("flotilla:") else n for n in names}


def test_dashboard_configmap_is_grafana_json() -> None:
    configmap = dashboards.dashboard_configmap(SPEC)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (payload,) = configmap["data"].values()
    board = json.loads(payload)
    titles = " ".join(p["title"] for p in board["panels"])
    for word in ("Requests per second", "Errors", "Latency", "Saturation", "Dependencies", "Cache", "SLO",
                 "memory", "CPU"):
        assert word in titles
    quantiles = [t["expr"] for p in board["panels"] for t in p.get("targets", ()) if "histogram_quantile" in t["expr"]]
    assert {q.split(",")[0] for q in quantiles} == {"histogram_quantile(0.5", "histogram_quantile(0.95",
                                                   "histogram_quantile(0.99"}


def test_every_expression_names_an_exported_metric() -> None:
    allowed = set(metric_names.ALL) | set(metric_names.EVENTS_EXPORTED_BY[SPEC.name]) | _recorded()
    for expr in dashboards.all_expressions(SPEC):
        used = _metrics_in(expr)
        assert used, f"no metric in {expr}"
        assert used <= allowed, f"{used - allowed} in {expr} is not in services/kit/metric_names.py"
        assert 'job="tasks"' in expr, expr
        assert 'namespace="flotilla"' in expr, expr


def test_burn_rate_alerts_follow_the_workbook() -> None:
    alerts = [r for g in dashboards.rule_groups(SPEC) for r in g["rules"] if "alert" in r]
    availability = [a for a in alerts if a["labels"].get("slo") == "availability"]
    critical = next(a for a in availability if a["labels"]["severity"] == "critical")["expr"]
    warning = next(a for a in availability if a["labels"]["severity"] == "warning")["expr"]
    assert "ratio_rate1h" in critical
    assert "ratio_rate5m" in critical
    assert "14.4 * 0.005" in critical
    assert "ratio_rate6h" in critical
    assert "ratio_rate30m" in critical
    assert "6 * 0.005" in critical
    assert "ratio_rate1d" in warning
    assert "ratio_rate2h" in warning
    assert "3 * 0.005" in warning
    assert "ratio_rate3d" in warning
    assert "1 * 0.005" in warning
    # 250ms rounds up to the 0.3s bucket: the latency SLI needs a real `le`.
    assert any('le="0.3"' in e for e in dashboards.all_expressions(SPEC))


def test_rules_and_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    rule = dashboards.prometheus_rule(SPEC)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    panel_queries = [t["expr"].replace(dashboards.RATE, "5m")
                     for p in dashboards.panels(SPEC) for t in p.get("targets", ())]
    panels_file = tmp_path / "panels.yaml"
    panels_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": [
        {"record": f"dashboard:query{i}:check", "expr": q} for i, q in enumerate(panel_queries)]}]}))
    result = promtool_check_rules(rules_file, panels_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_selects_the_service() -> None:
    monitor = dashboards.service_monitor(SPEC)
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "tasks"}
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"  # the chart's metrics port, never the API's


def test_event_delivery_alerts_go_to_the_service_exporting_their_metrics() -> None:
    def alerts_of(name: str) -> set[str]:
        one = spec.parse({"metadata": {"name": name, "namespace": "flotilla"}, "spec": {}})
        return {r["alert"] for g in dashboards.rule_groups(one) for r in g["rules"] if "alert" in r}

    assert {"FlotillaEventsUnconfirmed", "FlotillaEventsReplayed"} <= alerts_of("tasks")
    assert "FlotillaEventsConsumerLag" in alerts_of("data")
    assert not {a for a in alerts_of("users") if a.startswith("FlotillaEvents")}


def test_monitors_carry_the_labels_kube_prometheus_stack_selects() -> None:
    # A default kube-prometheus-stack selects only `release: <its release>`.
    for obj in (dashboards.service_monitor(SPEC), dashboards.prometheus_rule(SPEC)):
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    configmap = dashboards.dashboard_configmap(SPEC)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Flotilla"}


def test_monitoring_labels_are_configurable_per_operator_and_per_servicespec() -> None:
    monitoring = dashboards.Monitoring(monitor_labels={"release": "prom", "team": "platform"},
                                       dashboard_labels={"dashboards": "flotilla"},
                                       folder_annotation="k8s-sidecar-target-directory", folder="/tmp/dashboards")
    own = spec.parse({"metadata": {"name": "tasks", "namespace": "flotilla"}, "spec": {"dashboards": {
        "monitoringLabels": {"release": "team-prometheus", "app.kubernetes.io/name": "hijack"},
        "folder": "Team A"}}})
    for obj in (dashboards.service_monitor(own, monitoring), dashboards.prometheus_rule(own, monitoring)):
        labels = obj["metadata"]["labels"]
        assert labels["release"] == "team-prometheus"  # the ServiceSpec's own wins over the operator's
        assert labels["team"] == "platform"
        assert labels["app.kubernetes.io/name"] == "tasks"  # ownership labels are never overridden
    configmap = dashboards.dashboard_configmap(own, monitoring)
    assert configmap["metadata"]["labels"]["dashboards"] == "flotilla"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "Team A"}
    assert dashboards.dashboard_configmap(SPEC, monitoring)["metadata"]["annotations"] == {
        "k8s-sidecar-target-directory": "/tmp/dashboards"}
    unfiled = dashboards.dashboard_configmap(SPEC, dashboards.Monitoring(folder_annotation=""))
    assert unfiled["metadata"]["annotations"] == {}


@pytest.mark.parametrize("labels", [{"a b": "x"}, {"-x": "y"}, {"Example.com/x": "y"}, {"x": "a b"}, {"x" * 64: "y"}])
def test_monitoring_labels_kubernetes_would_refuse_are_refused(labels: dict[str, str]) -> None:
    obj = {"metadata": {"name": "tasks", "namespace": "flotilla"},
           "spec": {"dashboards": {"monitoringLabels": labels}}}
    with pytest.raises(spec.InvalidSpec):
        spec.parse(obj)


def test_settings_read_monitoring_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_OPERATOR_MONITOR_LABELS", '{"release": "prom"}')
    monkeypatch.setenv("FLOTILLA_OPERATOR_DASHBOARD_LABELS", '{"grafana_dashboard": "yes"}')
    monkeypatch.setenv("FLOTILLA_OPERATOR_DASHBOARD_FOLDER", "Platform")
    assert OperatorSettings().monitoring() == dashboards.Monitoring(
        monitor_labels={"release": "prom"}, dashboard_labels={"grafana_dashboard": "yes"}, folder="Platform")
    monkeypatch.setenv("FLOTILLA_OPERATOR_MONITOR_LABELS", '{"bad key": "x"}')
    with pytest.raises(ValueError, match="label key"):
        OperatorSettings()


def _panels_by_title(board: dict[str, Any], needle: str) -> dict[str, Any]:
    (panel,) = [p for p in board["panels"] if needle in p["title"]]
    return panel


def _steps(panel: dict[str, Any]) -> list[float]:
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]


def test_dashboard_is_one_a_grafana_user_keeps() -> None:
    """Variables, rows, SLO thresholds, value mappings and units (issue 17, item 5)."""
    board = json.loads(next(iter(dashboards.dashboard_configmap(SPEC)["data"].values())))
    assert board["editable"] is True
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "service", "pod"]
    assert variables["namespace"]["current"]["value"] == "flotilla"
    assert variables["service"]["current"]["value"] == "tasks"
    assert variables["pod"]["includeAll"] is True
    assert variables["pod"]["allValue"] == ".*"

    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Traffic", "Errors", "Latency", "Saturation", "Dependencies", "Process", "Events"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = [(x, y) for p in panels for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]
    assert len(cells) == len(set(cells)), "panels overlap"
    for panel in panels:
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        for target in panel["targets"]:
            assert 'job="$service"' in target["expr"], target["expr"]
            assert 'namespace="$namespace"' in target["expr"], target["expr"]
    # per-pod panels filter by the pod variable; the recorded SLO series have no pod label
    assert 'pod=~"$pod"' in _panels_by_title(board, "Requests per second by handler")["targets"][0]["expr"]
    assert "pod" not in _panels_by_title(board, "burn rate")["targets"][0]["expr"]

    # thresholds from the ServiceSpec's SLO (99.5 %, P95 under 250 ms)
    assert _steps(_panels_by_title(board, "5xx ratio")) == [0.005]
    assert _steps(_panels_by_title(board, "Latency percentiles")) == [0.25]
    assert _steps(_panels_by_title(board, "burn rate")) == [1.0, 3.0, 6.0, 14.4]
    assert _panels_by_title(board, "budget left")["type"] == "stat"

    # tasks has no breakers: no forever-empty panel; the gateway's maps the states
    assert not [p for p in board["panels"] if "Circuit breaker" in p["title"]]
    gateway = dashboards.dashboard(spec.parse({"metadata": {"name": "gateway", "namespace": "flotilla"}, "spec": {}}))
    breaker = _panels_by_title(gateway, "Circuit breaker")["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in breaker.items()} == {"0": "closed", "1": "half-open", "2": "open"}
    up = _panels_by_title(board, "Dependency up")["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in up.items()} == {"0": "down", "1": "up"}
    for ratio in ("5xx ratio", "Cache hit ratio", "Requests slower"):
        mappings = _panels_by_title(board, ratio)["fieldConfig"]["defaults"]["mappings"]
        assert {"match": "nan", "result": {"text": "no traffic", "index": 0}} in [m["options"] for m in mappings]

    units = {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in panels}
    assert units["Resident memory per pod"] == "bytes"
    assert units["Requests per second by handler"] == "reqps"
    assert units["Latency percentiles (SLO: P95 under 250ms)"] == "s"
    process = " ".join(t["expr"] for p in panels for t in p["targets"])
    for name in (metric_names.PROCESS_CPU_SECONDS_TOTAL, metric_names.PROCESS_RESIDENT_MEMORY_BYTES,
                 metric_names.PYTHON_GC_COLLECTIONS_TOTAL):
        assert name in process
