"""Grafana dashboard, ServiceMonitor and PrometheusRule for one ServiceSpec.

Every expression is built from services/kit/metric_names.py (imported, so a renamed
metric changes the dashboards with it) and filtered to the service's own series by the
``job`` and ``namespace`` labels the ServiceMonitor gives them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from prometheus_client import utils as prometheus_utils

from flotilla_operator import naming
from flotilla_operator.spec import ServiceSpec
from services.kit import metric_names as m

#: Label on Services (set by charts/service) that the ServiceMonitor selects and turns
#: into the ``job`` label of every scraped series.
SERVICE_LABEL: Final = "app.kubernetes.io/name"
#: The Service port (charts/service) where /metrics is served: never the API port.
METRICS_PORT_NAME: Final = "metrics"
RATE: Final = "$__rate_interval"

#: Multi-window, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs", table 5-8):
#: (long window, short window, burn-rate factor, severity). Both windows must burn.
BURN_RATE_WINDOWS: Final = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
SLI_WINDOWS: Final = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
#: Recording rule names, ``level:metric:operations`` as Prometheus recommends.
ERROR_RATIO_RULE: Final = "flotilla:sli_errors:ratio_rate{window}"
SLOW_RATIO_RULE: Final = "flotilla:sli_slow_requests:ratio_rate{window}"
#: Task events: an event unconfirmed this long (seconds) means data is not committing
#: them (its database, or events lost on the way and not yet replayed).
EVENTS_UNCONFIRMED_ALERT_SECONDS: Final = 300
#: Consumer lag (events) that alerts; data's /health reports degraded from
#: DATA_EVENTS_MAX_LAG (default the same) on.
EVENTS_LAG_ALERT: Final = 1000


#: What a default kube-prometheus-stack selects: its Prometheus only picks ServiceMonitors
#: and PrometheusRules labelled ``release: <its Helm release>`` (serviceMonitorSelector,
#: ruleSelector), its Grafana sidecar only loads ConfigMaps labelled
#: ``grafana_dashboard: "1"`` and files them by the ``grafana_folder`` annotation.
DEFAULT_MONITOR_LABELS: Final[Mapping[str, str]] = {"release": "kube-prometheus-stack"}
DEFAULT_DASHBOARD_LABELS: Final[Mapping[str, str]] = {"grafana_dashboard": "1"}
DEFAULT_FOLDER_ANNOTATION: Final = "grafana_folder"
DEFAULT_FOLDER: Final = "Flotilla"


@dataclass(frozen=True)
class Monitoring:
    """How this cluster's Prometheus and Grafana find what the operator writes.

    Operator-wide (settings, the chart's ``monitoring`` values); a ServiceSpec may add
    labels and pick its folder (``spec.dashboards.monitoringLabels``/``folder``).
    """

    monitor_labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MONITOR_LABELS))
    dashboard_labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_DASHBOARD_LABELS))
    #: Annotation key the Grafana sidecar reads the folder from; empty: no annotation.
    folder_annotation: str = DEFAULT_FOLDER_ANNOTATION
    folder: str = DEFAULT_FOLDER


def go_float(value: float) -> str:
    """A float as Prometheus client libraries write it into the ``le`` label."""
    return str(prometheus_utils.floatToGoString(value))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Selector:
    job: str
    namespace: str

    def __call__(self, **extra: str) -> str:
        labels = {"job": self.job, "namespace": self.namespace, **extra}
        return "{" + ", ".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def latency_bucket(latency_ms: int) -> float:
    """The smallest histogram bucket at least ``latency_ms``: an SLI can only count
    requests against a real ``le`` boundary."""
    seconds = latency_ms / 1000
    for bound in m.LATENCY_BUCKETS:
        if bound >= seconds - 1e-9:
            return bound
    return m.LATENCY_BUCKETS[-1]


def _errors_ratio(sel: Selector, window: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    requests = f"sum{group} (rate({m.HTTP_REQUESTS_TOTAL}{sel()}[{window}]))"
    # The 5xx series exists only after the first 5xx: "or <requests> * 0" makes a healthy
    # service's error ratio 0 instead of absent (an empty SLO, an empty burn-rate panel).
    return (
        f"(sum{group} (rate({m.HTTP_REQUESTS_TOTAL}{sel(status='5xx')}[{window}])) or {requests} * 0)"
        f" / {requests}"
    )


def _slow_ratio(sel: Selector, window: str, *, le: float, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return (
        f"1 - sum{group} (rate({m.HTTP_REQUEST_DURATION_SECONDS}_bucket{sel(le=go_float(le))}[{window}]))"
        f" / sum{group} (rate({m.HTTP_REQUEST_DURATION_SECONDS}_count{sel()}[{window}]))"
    )


def _quantile(sel: Selector, q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate({m.HTTP_REQUEST_DURATION_SECONDS}_bucket{sel()}[{RATE}])))"
    )


def panels(spec: ServiceSpec) -> list[dict[str, Any]]:
    """The dashboard's panels: (title, unit, [(legend, expr)]) rows laid out two per line."""
    sel = Selector(job=spec.name, namespace=spec.namespace)
    le = latency_bucket(spec.dashboards.latency_p95_ms)
    specs: list[tuple[str, str, str, list[tuple[str, str]]]] = [
        ("Rate", "Requests per second by handler", "reqps", [
            ("{{handler}}", f"sum by (handler) (rate({m.HTTP_REQUESTS_TOTAL}{sel()}[{RATE}]))"),
        ]),
        ("Errors", "5xx ratio and error codes", "percentunit", [
            ("5xx ratio", _errors_ratio(sel, RATE)),
            ("{{error_code}}", f"sum by (error_code) (rate({m.ERRORS_TOTAL}{sel()}[{RATE}]))"
                               f" / scalar(sum(rate({m.HTTP_REQUESTS_TOTAL}{sel()}[{RATE}])))"),
        ]),
        ("Duration", "Latency percentiles", "s", [
            (f"P{round(q * 100)}", _quantile(sel, q)) for q in (0.5, 0.95, 0.99)
        ]),
        ("Duration", f"Requests slower than {go_float(le)}s (latency SLI)", "percentunit", [
            ("slow ratio", _slow_ratio(sel, RATE, le=le)),
        ]),
        ("Saturation", "Requests in progress", "short", [
            ("{{pod}}", f"sum by (pod) ({m.HTTP_REQUESTS_INPROGRESS}{sel()})"),
        ]),
        ("Saturation", "Database pool connections in use", "short", [
            ("{{pod}}", f"sum by (pod) ({m.DB_POOL_IN_USE}{sel()})"),
        ]),
        ("Dependencies", "Dependency up (min over pods)", "short", [
            ("{{dependency}}", f"min by (dependency) ({m.DEPENDENCY_UP}{sel()})"),
        ]),
        ("Dependencies", "Circuit breaker state (0 closed, 1 half-open, 2 open)", "short", [
            ("{{upstream}}", f"max by (upstream) ({m.CIRCUIT_BREAKER_STATE}{sel()})"),
        ]),
        ("Cache", "Cache hit ratio", "percentunit", [
            ("{{cache}}", f"sum by (cache) (rate({m.CACHE_REQUESTS_TOTAL}{sel(result='hit')}[{RATE}]))"
                          f" / sum by (cache) (rate({m.CACHE_REQUESTS_TOTAL}{sel()}[{RATE}]))"),
        ]),
        ("SLO", "Error budget burn rate (1h), availability", "short", [
            ("burn rate", f"{ERROR_RATIO_RULE.format(window='1h')}{sel()}"
                          f" / {_budget(spec.dashboards.availability / 100):g}"),
        ]),
        ("Build", "Running versions", "short", [
            ("{{version}}", f"count by (version) ({m.SERVICE_INFO}{sel()})"),
        ]),
        *_event_panels(spec, sel),
    ]
    result = []
    for index, (row, title, unit, targets) in enumerate(specs):
        result.append({
            "id": index + 1,
            "type": "timeseries",
            "title": f"{row}: {title}",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [
                {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
                for n, (legend, expr) in enumerate(targets)
            ],
        })
    return result


def _event_panels(spec: ServiceSpec, sel: Selector) -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    """End-to-end delivery of task events, on the dashboard of the service exporting each metric."""
    owned = m.EVENTS_EXPORTED_BY.get(spec.name, ())
    result: list[tuple[str, str, str, list[tuple[str, str]]]] = []
    if m.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS in owned:
        result.append(("Events", "Unconfirmed events and the age of the oldest", "short", [
            ("unconfirmed", f"max({m.EVENTS_UNCONFIRMED}{sel()})"),
            ("oldest (s)", f"max({m.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS}{sel()})"),
        ]))
    if m.EVENTS_REPLAYED_TOTAL in owned:
        result.append(("Events", "Events published again, by reason", "short", [
            ("{{reason}}", f"sum by (reason) (rate({m.EVENTS_REPLAYED_TOTAL}{sel()}[{RATE}]))"),
        ]))
    if m.EVENTS_CONSUMER_LAG in owned:
        result.append(("Events", "Consumer lag (events beyond the confirmed sequence) and gaps", "short", [
            ("lag", f"max({m.EVENTS_CONSUMER_LAG}{sel()})"),
            ("gaps", f"sum(rate({m.EVENTS_GAPS_DETECTED_TOTAL}{sel()}[{RATE}]))"),
        ]))
    return result


def _event_alerts(spec: ServiceSpec, sel: Selector) -> list[dict[str, Any]]:
    owned = m.EVENTS_EXPORTED_BY.get(spec.name, ())
    where = f"{spec.namespace}/{spec.name}"
    alerts: list[dict[str, Any]] = []
    if m.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS in owned:
        alerts.append({
            "alert": "FlotillaEventsUnconfirmed",
            "expr": f"max({m.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS}{sel()}) > {EVENTS_UNCONFIRMED_ALERT_SECONDS}",
            "for": "5m",
            "labels": {"severity": "warning", "service": spec.name},
            "annotations": {
                "summary": f"{where}: task events are not being confirmed by their consumer",
                "description": f"The oldest event kept in the outbox has waited over "
                               f"{EVENTS_UNCONFIRMED_ALERT_SECONDS}s for data to commit it. Nothing is "
                               "lost (the outbox keeps it and replays it), but stats are behind: "
                               "check data's database and the event stream's Redis.",
            },
        })
    if m.EVENTS_REPLAYED_TOTAL in owned:
        alerts.append({
            "alert": "FlotillaEventsReplayed",
            "expr": f"sum by (reason) (increase({m.EVENTS_REPLAYED_TOTAL}{sel()}[15m])) > 0",
            "labels": {"severity": "info", "service": spec.name},
            "annotations": {
                "summary": f"{where}: task events were published again ({{{{ $labels.reason }}}})",
                "description": "reset: the stream's Redis lost its data (restart without AOF, failover, "
                               "eviction); timeout: events stayed unconfirmed past "
                               "TASKS_EVENTS_REPLAY_AFTER_SECONDS. The replay recovers them; "
                               "see the README, Task events and Redis.",
            },
        })
    if m.EVENTS_CONSUMER_LAG in owned:
        alerts.append({
            "alert": "FlotillaEventsConsumerLag",
            "expr": f"max({m.EVENTS_CONSUMER_LAG}{sel()}) > {EVENTS_LAG_ALERT}",
            "for": "10m",
            "labels": {"severity": "warning", "service": spec.name},
            "annotations": {
                "summary": f"{where}: the task-event consumer is over {EVENTS_LAG_ALERT} events behind",
                "description": "Events published but not committed without a gap: the consumer is "
                               "slow or failing, or a gap waits for a replay.",
            },
        })
    return alerts


def dashboard(spec: ServiceSpec) -> dict[str, Any]:
    uid_source = f"flotilla-{spec.namespace}-{spec.name}"
    # Grafana UIDs are at most 40 characters; long names get a stable hash instead.
    uid = uid_source if len(uid_source) <= 40 else "flotilla-" + hashlib.sha256(uid_source.encode()).hexdigest()[:31]
    return {
        "uid": uid,
        "title": f"Flotilla / {spec.namespace} / {spec.name}",
        "tags": ["flotilla", spec.name],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
        }]},
        "panels": panels(spec),
    }


def dashboard_configmap(spec: ServiceSpec, monitoring: Monitoring | None = None) -> dict[str, Any]:
    monitoring = monitoring or Monitoring()
    folder = spec.dashboards.folder or monitoring.folder
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": naming.dashboard_configmap_name(spec.name),
            "namespace": spec.namespace,
            # The Grafana sidecar loads every ConfigMap with its label (monitoring.dashboard_labels).
            "labels": {**monitoring.dashboard_labels, **common_labels(spec)},
            "annotations": {monitoring.folder_annotation: folder} if monitoring.folder_annotation and folder else {},
        },
        "data": {f"flotilla-{spec.name}.json": json.dumps(dashboard(spec), indent=1, sort_keys=True)},
    }


def monitor_labels(spec: ServiceSpec, monitoring: Monitoring | None = None) -> dict[str, str]:
    """Labels of the ServiceMonitor and PrometheusRule: operator-wide, then the
    ServiceSpec's own, then the operator's ``app.kubernetes.io/*`` (never overridden)."""
    monitoring = monitoring or Monitoring()
    return {**monitoring.monitor_labels, **spec.dashboards.monitoring_labels, **common_labels(spec)}


def service_monitor(spec: ServiceSpec, monitoring: Monitoring | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": monitor_labels(spec, monitoring)},
        "spec": {
            # job = the Service's app.kubernetes.io/name, i.e. the ServiceSpec's name,
            # whatever the Helm release calls the Service itself.
            "jobLabel": SERVICE_LABEL,
            "selector": {"matchLabels": {SERVICE_LABEL: spec.name}},
            "namespaceSelector": {"matchNames": [spec.namespace]},
            "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics", "interval": "30s"}],
        },
    }


def _budget(objective: float) -> float:
    # Rounded to dodge binary noise such as 1 - 0.999 = 0.0010000000000000009.
    return round(1.0 - objective, 10)


def rule_groups(spec: ServiceSpec) -> list[dict[str, Any]]:
    """SLO recording rules and burn-rate alerts, as the ``groups`` of a rules file.

    The rules of every service load together into one Prometheus: group names carry the
    namespace and service, and every rule its ``service`` label, so no two rules share a
    name and labels (``promtool check rules`` on the combined file finds no duplicate).
    """
    sel = Selector(job=spec.name, namespace=spec.namespace)
    le = latency_bucket(spec.dashboards.latency_p95_ms)
    by = "job, namespace"
    slos: tuple[tuple[str, str, float, Callable[[str], str], str], ...] = (
        ("availability", ERROR_RATIO_RULE, _budget(spec.dashboards.availability / 100),
         partial(_errors_ratio, sel, by=by),
         f"{spec.dashboards.availability:g}% of requests succeed (non-5xx)"),
        ("latency", SLOW_RATIO_RULE, _budget(0.95),
         partial(_slow_ratio, sel, le=le, by=by),
         f"95% of requests finish within {spec.dashboards.latency_p95_ms}ms "
         f"(measured at the {go_float(le)}s bucket)"),
    )
    recording = []
    alerts = []
    for slo, rule, budget, ratio, objective in slos:
        for window in SLI_WINDOWS:
            # The 30-day ratio averages the 5m one instead of re-reading 30 days of raw
            # samples every evaluation.
            expr = (f"avg_over_time({rule.format(window='5m')}{sel()}[30d])" if window == "30d"
                    else ratio(window))
            recording.append({"record": rule.format(window=window), "expr": expr,
                              "labels": {"slo": slo, "service": spec.name}})
        for severity in ("critical", "warning"):
            pairs = [(lw, sw, f) for lw, sw, f, s in BURN_RATE_WINDOWS if s == severity]
            condition = "\nor\n".join(
                f"({rule.format(window=lw)}{sel()} > {factor:g} * {budget:g}"
                f" and {rule.format(window=sw)}{sel()} > {factor:g} * {budget:g})"
                for lw, sw, factor in pairs
            )
            windows = ", ".join(f"{lw}/{sw} at {factor:g}x" for lw, sw, factor in pairs)
            alerts.append({
                "alert": "FlotillaErrorBudgetBurn",
                "expr": condition,
                "for": "2m" if severity == "critical" else "15m",
                "labels": {"severity": severity, "slo": slo, "service": spec.name},
                "annotations": {
                    "summary": f"{spec.namespace}/{spec.name} is burning its {slo} error budget",
                    "description": f"SLO: {objective}. Budget {budget:g} of requests over 30 days; "
                                   f"firing windows: {windows}.",
                },
            })
    budget_left = {
        "record": "flotilla:slo_error_budget_remaining:ratio",
        "expr": f"1 - {ERROR_RATIO_RULE.format(window='30d')}{sel()} / {slos[0][2]:g}",
        "labels": {"slo": "availability", "service": spec.name},
    }
    group = f"flotilla-{spec.namespace}-{spec.name}-slo"
    return [
        {"name": f"{group}-recording", "interval": "30s", "rules": [*recording, budget_left]},
        {"name": f"{group}-alerts", "rules": alerts},
        *([{"name": f"{group}-events", "rules": events}] if (events := _event_alerts(spec, sel)) else []),
    ]


def prometheus_rule(spec: ServiceSpec, monitoring: Monitoring | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": naming.prometheus_rule_name(spec.name),
            "namespace": spec.namespace,
            "labels": monitor_labels(spec, monitoring),
        },
        "spec": {"groups": rule_groups(spec)},
    }


def common_labels(spec: ServiceSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/part-of": "flotilla",
        "app.kubernetes.io/managed-by": "flotilla-operator",
    }


def all_expressions(spec: ServiceSpec) -> list[str]:
    """Every PromQL expression this module generates for ``spec`` (for tests and docs)."""
    exprs = [t["expr"] for p in panels(spec) for t in p["targets"]]
    exprs += [r["expr"] for g in rule_groups(spec) for r in g["rules"]]
    return exprs
