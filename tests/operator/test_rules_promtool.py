"""The rules of every service, loaded together into one Prometheus, checked and unit-tested
by promtool: no duplicate rules, and the multi-window, multi-burn-rate alerts (Google SRE
workbook, "Alerting on SLOs") page on a fast burn, open a ticket on a slow one and stay
quiet without a burn."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_operator import dashboards, spec

from services.kit import catalog
from tests.support.prometheus import promtool_check_rules, promtool_test_rules

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool comes with Debian's prometheus (make test installs it)")

NAMESPACE = "flotilla"
#: 99.9 %: an error budget of 0.001; the page needs > 14.4x (1h/5m) or > 6x (6h/30m) of
#: it, the ticket > 3x (1d/2h) or > 1x (3d/6h).
AVAILABILITY = 99.9
REQUESTS_PER_MINUTE = 1000
BURNING = "tasks"


def _spec(name: str) -> spec.ServiceSpec:
    return spec.parse({"metadata": {"name": name, "namespace": NAMESPACE},
                       "spec": {"dashboards": {"slo": {"availability": AVAILABILITY, "latencyP95Ms": 300}}}})


def combined_groups() -> list[dict[str, Any]]:
    return [g for s in catalog.SERVICES for g in dashboards.rule_groups(_spec(s.name))]


def _write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": combined_groups()}, sort_keys=False))
    return path


def test_all_services_rules_load_together(tmp_path: Path) -> None:
    groups = combined_groups()
    assert len({g["name"] for g in groups}) == len(groups)
    checked = promtool_check_rules(_write_rules(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "duplicate" not in checked.stdout + checked.stderr


def _series(errors_per_minute: int, requests_per_minute: int = REQUESTS_PER_MINUTE) -> list[dict[str, str]]:
    """One minute per sample: ``errors_per_minute`` 5xx besides the 2xx, every request
    fast (so the latency SLO never burns)."""
    labels = f'job="{BURNING}", namespace="{NAMESPACE}", handler="/api/v1/tasks", method="GET"'
    total = requests_per_minute + errors_per_minute
    le = dashboards.go_float(dashboards.latency_bucket(300))
    series = [
        {"series": f'http_requests_total{{{labels}, status="2xx"}}', "values": f"0+{requests_per_minute}x400"},
        {"series": f'http_request_duration_seconds_bucket{{{labels}, le="{le}"}}', "values": f"0+{total}x400"},
        {"series": f'http_request_duration_seconds_bucket{{{labels}, le="+Inf"}}', "values": f"0+{total}x400"},
        {"series": f"http_request_duration_seconds_count{{{labels}}}", "values": f"0+{total}x400"},
    ]
    if errors_per_minute:  # no 5xx at all: the series does not exist (as on a healthy service)
        series.append({"series": f'http_requests_total{{{labels}, status="5xx"}}',
                       "values": f"0+{errors_per_minute}x400"})
    return series


def _expected(*severities: str) -> list[dict[str, Any]]:
    alerts = {r["labels"]["severity"]: r for g in dashboards.rule_groups(_spec(BURNING)) for r in g["rules"]
              if r.get("alert") == "FlotillaErrorBudgetBurn" and r["labels"]["slo"] == "availability"}
    return [{"exp_labels": {"job": BURNING, "namespace": NAMESPACE, **alerts[s]["labels"]},
             "exp_annotations": alerts[s]["annotations"]} for s in severities]


def _case(name: str, errors_per_minute: int, checks: list[tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
    return {
        "name": name,
        "interval": "1m",
        "input_series": _series(errors_per_minute),
        "alert_rule_test": [{"eval_time": at, "alertname": "FlotillaErrorBudgetBurn", "exp_alerts": _expected(*sev)}
                            for at, sev in checks],
    }


def _idle_case() -> dict[str, Any]:
    """Series exist but nothing is served: every SLI records 0 (not NaN, which would
    make the 30-day average NaN for 30 days), and the whole budget is left."""
    labels = {"job": BURNING, "namespace": NAMESPACE, "service": BURNING}

    def sample(rule: str, slo: str, value: float) -> dict[str, Any]:
        selector = ", ".join(f'{k}="{v}"' for k, v in {**labels, "slo": slo}.items())
        return {"expr": f"{rule}{{{selector}}}", "eval_time": "20m",
                "exp_samples": [{"labels": f"{rule}{{{selector}}}", "value": value}]}

    return {
        "name": "idle",
        "interval": "1m",
        "input_series": _series(0, requests_per_minute=0),
        "promql_expr_test": [
            sample(dashboards.ERROR_RATIO_RULE.format(window="5m"), "availability", 0),
            sample(dashboards.ERROR_RATIO_RULE.format(window="30d"), "availability", 0),
            sample(dashboards.SLOW_RATIO_RULE.format(window="5m"), "latency", 0),
            sample("flotilla:slo_error_budget_remaining:ratio", "availability", 1),
        ],
        "alert_rule_test": [{"eval_time": "20m", "alertname": "FlotillaErrorBudgetBurn", "exp_alerts": []}],
    }


def test_burn_rate_alerts_page_on_fast_burns_and_ticket_on_slow_ones(tmp_path: Path) -> None:
    rules = _write_rules(tmp_path)
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "30s",
        "tests": [
            # ~9 % errors, 90x the budget: the page fires within minutes (1h/5m, `for: 2m`);
            # the ticket follows once its own `for: 15m` has passed.
            _case("fast burn", 100, [("10m", ("critical",)), ("40m", ("critical", "warning"))]),
            # ~0.5 % errors, 5x the budget: under both page thresholds (14.4x, 6x), over the
            # ticket's (3x over 1d/2h, 1x over 3d/6h): a ticket only, never a page.
            _case("slow burn", 5, [("10m", ()), ("1h", ("warning",)), ("5h", ("warning",))]),
            # No 5xx series at all: the error ratio is 0, not absent, and nothing fires.
            _case("no burn", 0, [("10m", ()), ("5h", ())]),
            _idle_case(),
        ],
    }
    path = tmp_path / "burn_rate_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool_test_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_operator_alerts_fire_on_failing_reconciles_only(tmp_path: Path) -> None:
    """The operator's own alerts: reconciles failing for 15 minutes warn; a healthy
    operator (reconciles, no failures, fast) stays quiet."""
    rules = tmp_path / "operator-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": dashboards.operator_rule_groups()}, sort_keys=False))
    checked = promtool_check_rules(rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (failing,) = [r for r in dashboards.operator_rule_groups()[0]["rules"]
                  if r["alert"] == "FlotillaOperatorReconcileFailing"]
    where = 'namespace="flotilla-system", job="flotilla-operator-metrics"'
    fast = [{"series": f'flotilla_operator_reconcile_duration_seconds_bucket{{{where}, part="database", le="{le}"}}',
             "values": "0+2x120"} for le in ("0.5", "+Inf")]
    tests = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [
        {"name": "failing", "interval": "1m", "input_series": [
            *fast, {"series": f'flotilla_operator_reconcile_failures_total{{{where}, part="database", '
                              f'reason="DatabaseUnavailable"}}', "values": "0+1x120"}],
         "alert_rule_test": [
             {"eval_time": "10m", "alertname": "FlotillaOperatorReconcileFailing", "exp_alerts": []},
             {"eval_time": "40m", "alertname": "FlotillaOperatorReconcileFailing", "exp_alerts": [{
                 "exp_labels": {"namespace": "flotilla-system", "job": "flotilla-operator-metrics",
                                "part": "database", "reason": "DatabaseUnavailable", **failing["labels"]},
                 "exp_annotations": {
                     "summary": "The Flotilla operator keeps failing to reconcile database (DatabaseUnavailable)",
                     "description": failing["annotations"]["description"]}}]},
             {"eval_time": "40m", "alertname": "FlotillaOperatorProvisioningSlow", "exp_alerts": []}]},
        {"name": "healthy", "interval": "1m", "input_series": fast,
         "alert_rule_test": [{"eval_time": "40m", "alertname": name, "exp_alerts": []}
                             for name in ("FlotillaOperatorReconcileFailing", "FlotillaOperatorProvisioningSlow")]},
    ]}
    path = tmp_path / "operator_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool_test_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_operator_dashboard_reads_only_what_the_operator_exports() -> None:
    from flotilla_operator.metrics import OperatorMetrics
    from prometheus_client import generate_latest

    metrics = OperatorMetrics()
    metrics.failed("database", "x")
    with metrics.reconcile("database", "create"):
        pass
    exported = {line.split()[2] for line in generate_latest(metrics.registry).decode().splitlines()
                if line.startswith("# TYPE ")}
    board = dashboards.operator_dashboard()
    assert board["editable"] is True
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == ["Reconciles", "Process"]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    exprs += [r["expr"] for g in dashboards.operator_rule_groups() for r in g["rules"]]
    for expr in exprs:
        for name in re.findall(r"([a-z_:]+)(?:\{|\[)", expr):
            assert re.sub(r"_(bucket|count|sum)$", "", name) in exported, f"{name} in {expr}"
