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

from flotilla_operator import metrics as om
from flotilla_operator import naming
from flotilla_operator.spec import ServiceSpec
from services.kit import catalog
from services.kit import metric_names as m

#: Label on Services (set by charts/service) that the ServiceMonitor selects and turns
#: into the ``job`` label of every scraped series.
SERVICE_LABEL: Final = "app.kubernetes.io/name"
#: The Service port (charts/service) where /metrics is served: never the API port.
METRICS_PORT_NAME: Final = "metrics"
RATE: Final = "$__rate_interval"
#: Dashboard template variables: the panels filter by them, so one dashboard serves any
#: namespace, service and pod; their defaults are the ServiceSpec's own.
VAR_NAMESPACE: Final = "$namespace"
VAR_SERVICE: Final = "$service"
VAR_POD: Final = "$pod"
#: The regex "every pod" stands for (also matches series without a pod label).
ALL_PODS: Final = ".*"

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
    #: Also filter by the dashboard's pod variable (panels; never rules).
    pod: bool = False
    #: ``job`` is a regex (a multi-value variable).
    job_regex: bool = False

    def __call__(self, **extra: str) -> str:
        labels = {"job": self.job, "namespace": self.namespace, **extra}
        matchers = [f'{key}{"=~" if key == "job" and self.job_regex else "="}"{value}"'
                    for key, value in labels.items()]
        if self.pod:
            matchers.append(f'pod=~"{VAR_POD}"')
        return "{" + ", ".join(matchers) + "}"


def latency_bucket(latency_ms: int) -> float:
    """The smallest histogram bucket at least ``latency_ms``: an SLI can only count
    requests against a real ``le`` boundary."""
    seconds = latency_ms / 1000
    for bound in m.LATENCY_BUCKETS:
        if bound >= seconds - 1e-9:
            return bound
    return m.LATENCY_BUCKETS[-1]


#: Divides a rate by max(rate, this): 0/0 (no traffic in the window) is 0, not NaN. A real
#: rate is at least one request per window (over 30 days, ~4e-7/s), far above it. A NaN
#: recorded for an idle 5 minutes would make the 30-day average (avg_over_time) NaN for
#: 30 days; an idle window burns no error budget, so 0 is the right value for the SLIs.
IDLE_FLOOR: Final = 1e-12


def _errors_ratio(sel: Selector, window: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    requests = f"sum{group} (rate({m.HTTP_REQUESTS_TOTAL}{sel()}[{window}]))"
    # The 5xx series exists only after the first 5xx: "or <requests> * 0" makes a healthy
    # service's error ratio 0 instead of absent (an empty SLO, an empty burn-rate panel).
    return (
        f"(sum{group} (rate({m.HTTP_REQUESTS_TOTAL}{sel(status='5xx')}[{window}])) or {requests} * 0)"
        f" / clamp_min({requests}, {IDLE_FLOOR:g})"
    )


def _slow_ratio(sel: Selector, window: str, *, le: float, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    count = f"sum{group} (rate({m.HTTP_REQUEST_DURATION_SECONDS}_count{sel()}[{window}]))"
    return (
        f"({count} - sum{group} (rate({m.HTTP_REQUEST_DURATION_SECONDS}_bucket{sel(le=go_float(le))}[{window}])))"
        f" / clamp_min({count}, {IDLE_FLOOR:g})"
    )


def _quantile(sel: Selector, q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate({m.HTTP_REQUEST_DURATION_SECONDS}_bucket{sel()}[{RATE}])))"
    )


#: Grafana value mappings shared by panels.
NO_TRAFFIC: Final[list[dict[str, Any]]] = [
    {"type": "special", "options": {"match": "nan", "result": {"text": "no traffic", "index": 0}}},
    {"type": "special", "options": {"match": "null", "result": {"text": "no traffic", "index": 1}}},
]
BREAKER_STATES: Final[list[dict[str, Any]]] = [{"type": "value", "options": {
    "0": {"text": "closed", "color": "green", "index": 0},
    "1": {"text": "half-open", "color": "yellow", "index": 1},
    "2": {"text": "open", "color": "red", "index": 2},
}}]
DEPENDENCY_STATES: Final[list[dict[str, Any]]] = [{"type": "value", "options": {
    "0": {"text": "down", "color": "red", "index": 0},
    "1": {"text": "up", "color": "green", "index": 1},
}}]
#: Dashboard rows, in order.
ROWS: Final = ("Traffic", "Errors", "Latency", "Saturation", "Dependencies", "Process", "Events")


@dataclass(frozen=True)
class Panel:
    row: str
    title: str
    unit: str
    targets: list[tuple[str, str]]  # (legend, expr)
    kind: str = "timeseries"
    #: (value, color) steps above the base (green); empty: no thresholds shown.
    steps: tuple[tuple[float, str], ...] = ()
    mappings: list[dict[str, Any]] = field(default_factory=list)
    #: The color below the first step.
    base: str = "green"
    min: float | None = None
    max: float | None = None


def _thresholds(steps: tuple[tuple[float, str], ...], base: str = "green") -> dict[str, Any]:
    return {"mode": "absolute",
            "steps": [{"color": base, "value": None}, *({"color": c, "value": v} for v, c in steps)]}


def _uses_breakers(spec: ServiceSpec) -> bool:
    """Flotilla services without breakers get no (forever empty) breaker panel; a service
    outside the catalog may use the kit's breakers, so it keeps it."""
    return spec.name in m.BREAKERS_USED_BY or spec.name not in {s.name for s in catalog.SERVICES}


def panel_specs(spec: ServiceSpec) -> list[Panel]:
    """What the dashboard shows, row by row; every threshold comes from the SLO targets."""
    sel = Selector(job=VAR_SERVICE, namespace=VAR_NAMESPACE, pod=True)
    slo_sel = Selector(job=VAR_SERVICE, namespace=VAR_NAMESPACE)  # recorded series: no pod
    le = latency_bucket(spec.dashboards.latency_p95_ms)
    budget = _budget(spec.dashboards.availability / 100)
    p95_seconds = spec.dashboards.latency_p95_ms / 1000
    # 1x spends the budget exactly in 30 days; the ticket's and the page's factors above it.
    burn_steps = tuple(sorted({(1.0, "yellow"), *((f, "red" if s == "critical" else "orange")
                                                  for _, _, f, s in BURN_RATE_WINDOWS if f > 1)}))
    requests_rate = f"rate({m.HTTP_REQUESTS_TOTAL}{sel()}[{RATE}])"
    return [
        Panel("Traffic", "Requests per second by handler", "reqps", [
            ("{{handler}}", f"sum by (handler) ({requests_rate})")]),
        Panel("Traffic", "Requests per second by status", "reqps", [
            ("{{status}}", f"sum by (status) ({requests_rate})")]),
        Panel("Errors", f"5xx ratio (SLO budget {budget:g}) and error codes", "percentunit", [
            ("5xx ratio", _errors_ratio(sel, RATE)),
            ("{{error_code}}", f"sum by (error_code) (rate({m.ERRORS_TOTAL}{sel()}[{RATE}]))"
                               f" / scalar(sum({requests_rate}))"),
        ], steps=((budget, "red"),), mappings=NO_TRAFFIC, min=0),
        Panel("Errors", "SLO: error budget burn rate (1h), availability", "short", [
            ("burn rate", f"{ERROR_RATIO_RULE.format(window='1h')}{slo_sel()} / {budget:g}")],
            steps=burn_steps, mappings=NO_TRAFFIC, min=0),
        Panel("Errors", f"SLO: error budget left (30d, {spec.dashboards.availability:g}% availability)",
              "percentunit", [("budget left", f"flotilla:slo_error_budget_remaining:ratio{slo_sel()}")],
              kind="stat", steps=((0.0, "orange"), (0.25, "green")), base="red", mappings=NO_TRAFFIC),
        Panel("Latency", f"Latency percentiles (SLO: P95 under {spec.dashboards.latency_p95_ms}ms)", "s", [
            (f"P{round(q * 100)}", _quantile(sel, q)) for q in (0.5, 0.95, 0.99)],
            steps=((p95_seconds, "red"),), mappings=NO_TRAFFIC, min=0),
        Panel("Latency", f"Requests slower than {go_float(le)}s (latency SLI, budget 5%)", "percentunit", [
            ("slow ratio", _slow_ratio(sel, RATE, le=le))],
            steps=((0.05, "red"),), mappings=NO_TRAFFIC, min=0),
        Panel("Saturation", "Requests in progress", "short", [
            ("{{pod}}", f"sum by (pod) ({m.HTTP_REQUESTS_INPROGRESS}{sel()})")], min=0),
        Panel("Saturation", "Database pool connections in use", "short", [
            ("{{pod}}", f"sum by (pod) ({m.DB_POOL_IN_USE}{sel()})")], min=0),
        Panel("Dependencies", "Dependency up (min over pods)", "short", [
            ("{{dependency}}", f"min by (dependency) ({m.DEPENDENCY_UP}{sel()})")],
            kind="state-timeline", mappings=DEPENDENCY_STATES, steps=((1, "green"),), base="red", min=0, max=1),
        *([Panel("Dependencies", "Circuit breaker state per upstream (worst pod)", "short", [
            ("{{upstream}}", f"max by (upstream) ({m.CIRCUIT_BREAKER_STATE}{sel()})")],
            kind="state-timeline", mappings=BREAKER_STATES, steps=((1, "yellow"), (2, "red")), min=0, max=2)]
          if _uses_breakers(spec) else []),
        Panel("Dependencies", "Cache hit ratio", "percentunit", [
            ("{{cache}}", f"sum by (cache) (rate({m.CACHE_REQUESTS_TOTAL}{sel(result='hit')}[{RATE}]))"
                          f" / sum by (cache) (rate({m.CACHE_REQUESTS_TOTAL}{sel()}[{RATE}]))")],
            mappings=NO_TRAFFIC, min=0, max=1),
        Panel("Process", "CPU per pod (1 = one core)", "percentunit", [
            ("{{pod}}", f"sum by (pod) (rate({m.PROCESS_CPU_SECONDS_TOTAL}{sel()}[{RATE}]))")], min=0),
        Panel("Process", "Resident memory per pod", "bytes", [
            ("{{pod}}", f"sum by (pod) ({m.PROCESS_RESIDENT_MEMORY_BYTES}{sel()})")], min=0),
        Panel("Process", "Open file descriptors (share of the limit)", "percentunit", [
            ("{{pod}}", f"max by (pod) ({m.PROCESS_OPEN_FDS}{sel()} / {m.PROCESS_MAX_FDS}{sel()})")],
            steps=((0.8, "red"),), min=0),
        Panel("Process", "Garbage collections per second by generation", "ops", [
            ("gen {{generation}}", f"sum by (generation) (rate({m.PYTHON_GC_COLLECTIONS_TOTAL}{sel()}[{RATE}]))")],
            min=0),
        Panel("Process", "Running versions", "short", [
            ("{{version}}", f"count by (version) ({m.SERVICE_INFO}{sel()})")], min=0),
        *_event_panels(spec, sel),
    ]


def _event_panels(spec: ServiceSpec, sel: Selector) -> list[Panel]:
    """End-to-end delivery of task events, on the dashboard of the service exporting each metric."""
    owned = m.EVENTS_EXPORTED_BY.get(spec.name, ())
    result: list[Panel] = []
    if m.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS in owned:
        result.append(Panel("Events", "Unconfirmed events and the age of the oldest", "short", [
            ("unconfirmed", f"max({m.EVENTS_UNCONFIRMED}{sel()})"),
            ("oldest (s)", f"max({m.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS}{sel()})"),
        ], steps=((EVENTS_UNCONFIRMED_ALERT_SECONDS, "red"),), min=0))
    if m.EVENTS_REPLAYED_TOTAL in owned:
        result.append(Panel("Events", "Events published again, by reason", "short", [
            ("{{reason}}", f"sum by (reason) (rate({m.EVENTS_REPLAYED_TOTAL}{sel()}[{RATE}]))"),
        ], min=0))
    if m.EVENTS_CONSUMER_LAG in owned:
        result.append(Panel("Events", "Consumer lag (events beyond the confirmed sequence) and gaps", "short", [
            ("lag", f"max({m.EVENTS_CONSUMER_LAG}{sel()})"),
            ("gaps", f"sum(rate({m.EVENTS_GAPS_DETECTED_TOTAL}{sel()}[{RATE}]))"),
        ], steps=((EVENTS_LAG_ALERT, "red"),), min=0))
    return result


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "mappings": panel.mappings,
                                "thresholds": _thresholds(panel.steps, panel.base)}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    if panel.kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "dashed" if panel.steps else "off"}}
    elif panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "none"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [{"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
                    for n, (legend, expr) in enumerate(panel.targets)],
    }


def panels(spec: ServiceSpec) -> list[dict[str, Any]]:
    """The dashboard's panels: a row panel per ROWS entry in use, then its panels two per line."""
    result: list[dict[str, Any]] = []
    y = 0
    specs = panel_specs(spec)
    for row in ROWS:
        in_row = [p for p in specs if p.row == row]
        if not in_row:
            continue
        result.append({"id": len(result) + 1, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        for index, panel in enumerate(in_row):
            result.append(_panel_json(panel, len(result) + 1, 12 * (index % 2), y + 8 * (index // 2)))
        y += 8 * ((len(in_row) + 1) // 2)
    return result


def _variable(name: str, label: str, query: str, current: str, *, include_all: bool = False) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "name": name, "label": label, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "definition": query, "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2, "sort": 1, "multi": include_all, "includeAll": include_all,
        "current": {"selected": True, "text": current, "value": "$__all" if current == "All" else current},
    }
    if include_all:
        variable["allValue"] = ALL_PODS
    return variable


def variables(spec: ServiceSpec) -> list[dict[str, Any]]:
    info = m.SERVICE_INFO
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
        _variable("namespace", "Namespace", f"label_values({info}, namespace)", spec.namespace),
        _variable("service", "Service", f'label_values({info}{{namespace="{VAR_NAMESPACE}"}}, job)', spec.name),
        _variable("pod", "Pod", f'label_values({info}{{namespace="{VAR_NAMESPACE}", job="{VAR_SERVICE}"}}, pod)',
                  "All", include_all=True),
    ]


def resolve(expr: str, spec: ServiceSpec) -> str:
    """A panel query as Grafana sends it with the variables at their defaults (this
    ServiceSpec, every pod); ``$__rate_interval`` is left for the caller."""
    return (expr.replace(VAR_NAMESPACE, spec.namespace).replace(VAR_SERVICE, spec.name)
            .replace(VAR_POD, ALL_PODS))


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
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(spec)},
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
    """Every PromQL expression this module generates for ``spec`` (for tests and docs), the
    panels' with their template variables at the defaults (``resolve``)."""
    exprs = [resolve(t["expr"], spec) for p in panels(spec) for t in p.get("targets", ())]
    exprs += [r["expr"] for g in rule_groups(spec) for r in g["rules"]]
    return exprs


# --- The operator's own dashboard and alerts -------------------------------------------

#: ``flotilla dashboards operator`` / ``flotilla rules operator`` print these.
OPERATOR: Final = "operator"
#: Reconcile failures that alert: any in the last 15 minutes, for 15 minutes (a transient
#: error is retried and clears it).
OPERATOR_FAILURES_WINDOW: Final = "15m"
#: Provisioning latency (P95 of one part's reconcile, seconds) that alerts.
OPERATOR_SLOW_RECONCILE_SECONDS: Final = 10.0


def _operator_panels() -> list[Panel]:
    # The operator's metric names are its own (flotilla_operator.metrics): no job filter
    # is needed, and the chart's Service name (the job) depends on the release.
    sel = Selector(job="$job", namespace=VAR_NAMESPACE, pod=True, job_regex=True)
    part_rate = f"rate({om.RECONCILES_TOTAL}{sel()}[{RATE}])"
    return [
        Panel("Reconciles", "Reconciles per second by part and trigger", "ops", [
            ("{{part}} ({{trigger}})", f"sum by (part, trigger) ({part_rate})")], min=0),
        Panel("Reconciles", "Reconcile failures per second by part and reason", "ops", [
            ("{{part}}: {{reason}}", f"sum by (part, reason) (rate({om.FAILURES_TOTAL}{sel()}[{RATE}]))")],
            steps=((0.0001, "red"),), min=0),
        Panel("Reconciles", "Provisioning latency (P95 of one part's reconcile)", "s", [
            ("{{part}}", f"histogram_quantile(0.95, sum by (part, le) "
                         f"(rate({om.RECONCILE_DURATION_SECONDS}_bucket{sel()}[{RATE}])))")],
            steps=((OPERATOR_SLOW_RECONCILE_SECONDS, "red"),), mappings=NO_TRAFFIC, min=0),
        Panel("Process", "CPU per pod (1 = one core)", "percentunit", [
            ("{{pod}}", f"sum by (pod) (rate({m.PROCESS_CPU_SECONDS_TOTAL}{sel()}[{RATE}]))")], min=0),
        Panel("Process", "Resident memory per pod", "bytes", [
            ("{{pod}}", f"sum by (pod) ({m.PROCESS_RESIDENT_MEMORY_BYTES}{sel()})")], min=0),
    ]


def operator_dashboard(namespace: str = "flotilla-system") -> dict[str, Any]:
    """The operator's own dashboard: reconciles, failures, provisioning latency, process."""
    result: list[dict[str, Any]] = []
    y = 0
    specs = _operator_panels()
    for row in ("Reconciles", "Process"):
        in_row = [p for p in specs if p.row == row]
        result.append({"id": len(result) + 1, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        for index, panel in enumerate(in_row):
            result.append(_panel_json(panel, len(result) + 1, 12 * (index % 2), y + 8 * (index // 2)))
        y += 8 * ((len(in_row) + 1) // 2)
    metric = om.RECONCILES_TOTAL
    return {
        "uid": "flotilla-operator", "title": "Flotilla / operator", "tags": ["flotilla", "operator"],
        "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
            _variable("namespace", "Namespace", f"label_values({metric}, namespace)", namespace),
            _variable("job", "Job", f'label_values({metric}{{namespace="{VAR_NAMESPACE}"}}, job)', "All",
                      include_all=True),
            _variable("pod", "Pod", f'label_values({metric}{{namespace="{VAR_NAMESPACE}"}}, pod)', "All",
                      include_all=True),
        ]},
        "panels": result,
    }


def operator_rule_groups() -> list[dict[str, Any]]:
    """Alerts on the operator itself: reconciles that keep failing, slow provisioning."""
    by = "namespace, job, part"
    window = OPERATOR_FAILURES_WINDOW
    return [{"name": "flotilla-operator", "rules": [
        {
            "alert": "FlotillaOperatorReconcileFailing",
            "expr": f"sum by ({by}, reason) (increase({om.FAILURES_TOTAL}[{window}])) > 0",
            "for": window,
            "labels": {"severity": "warning", "service": OPERATOR},
            "annotations": {
                "summary": "The Flotilla operator keeps failing to reconcile {{ $labels.part }} "
                           "({{ $labels.reason }})",
                "description": "Reconciles of this part failed throughout the last "
                               f"{window}: check the operator's log and the ServiceSpecs' status "
                               "conditions (kubectl get servicespecs -A).",
            },
        },
        {
            "alert": "FlotillaOperatorProvisioningSlow",
            "expr": f"histogram_quantile(0.95, sum by ({by}, le) "
                    f"(rate({om.RECONCILE_DURATION_SECONDS}_bucket[{window}]))) > {OPERATOR_SLOW_RECONCILE_SECONDS:g}",
            "for": window,
            "labels": {"severity": "warning", "service": OPERATOR},
            "annotations": {
                "summary": "Flotilla operator: reconciling {{ $labels.part }} takes over "
                           f"{OPERATOR_SLOW_RECONCILE_SECONDS:g}s (P95)",
                "description": "The database or Redis admin connection is slow, or the API server "
                               "throttles the operator.",
            },
        },
    ]}]
