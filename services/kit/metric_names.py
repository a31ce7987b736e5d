"""Every Prometheus metric name a Flotilla service exports, defined once.

The instrumentator's HTTP metrics keep their library names (so community dashboards
work); ours carry the ``flotilla_`` prefix. The operator builds Grafana dashboards and
PrometheusRules from these constants, and a test checks that a running service really
exports each of them.
"""

from __future__ import annotations

# --- HTTP (prometheus-fastapi-instrumentator) ------------------------------------
#: Counter; labels: handler, method, status (status grouped as 2xx/4xx/5xx).
HTTP_REQUESTS_TOTAL = "http_requests_total"
#: Histogram (seconds); labels: handler, method, status. Buckets tuned for P50..P99 panels.
HTTP_REQUEST_DURATION_SECONDS = "http_request_duration_seconds"
#: Gauge; labels: method.
HTTP_REQUESTS_INPROGRESS = "http_requests_inprogress"

# --- Flotilla ----------------------------------------------------------------------
#: Gauge 1/0; labels: dependency (database, redis, or an upstream service name).
DEPENDENCY_UP = "flotilla_dependency_up"
#: Counter; labels: cache (logical cache name), result (hit, miss, error).
CACHE_REQUESTS_TOTAL = "flotilla_cache_requests_total"
#: Gauge; labels: upstream; 0 closed, 1 half-open, 2 open.
CIRCUIT_BREAKER_STATE = "flotilla_circuit_breaker_state"
#: The services whose breakers ever get a series (the gateway's upstreams, data's
#: recommendation sources): the others' dashboards leave the breaker panel out.
BREAKERS_USED_BY: tuple[str, ...] = ("gateway", "data")
#: Gauge; connections checked out of the SQLAlchemy pool.
DB_POOL_IN_USE = "flotilla_db_pool_connections_in_use"
#: Counter; labels: error_code. Every error response in the one error shape.
ERRORS_TOTAL = "flotilla_errors_total"

#: Service info gauge (always 1); labels: service, version.
SERVICE_INFO = "flotilla_service_info"

# --- Process and runtime (prometheus_client's process, platform and GC collectors) ---
#: Counter (seconds of CPU, user + system).
PROCESS_CPU_SECONDS_TOTAL = "process_cpu_seconds_total"
#: Gauge (bytes).
PROCESS_RESIDENT_MEMORY_BYTES = "process_resident_memory_bytes"
#: Gauges: file descriptors open, and the limit.
PROCESS_OPEN_FDS = "process_open_fds"
PROCESS_MAX_FDS = "process_max_fds"
#: Counter; labels: generation. Garbage collections.
PYTHON_GC_COLLECTIONS_TOTAL = "python_gc_collections_total"

#: The histogram buckets (seconds) for HTTP_REQUEST_DURATION_SECONDS.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)

ALL: tuple[str, ...] = (
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_INPROGRESS,
    DEPENDENCY_UP,
    CACHE_REQUESTS_TOTAL,
    CIRCUIT_BREAKER_STATE,
    DB_POOL_IN_USE,
    ERRORS_TOTAL,
    SERVICE_INFO,
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PYTHON_GC_COLLECTIONS_TOTAL,
)

# --- Task events (tasks' outbox relay, data's consumer) ------------------------------
# Exported only by the service that owns them, so they are not in ALL (which every
# service exports); EVENTS lists them for dashboards and tests.
#: Gauge; outbox rows not yet published (tasks). Growing = Redis/data unreachable.
OUTBOX_BACKLOG = "flotilla_outbox_backlog"
#: Gauge (seconds); age of the oldest unpublished outbox row, 0 when none (tasks).
OUTBOX_OLDEST_AGE_SECONDS = "flotilla_outbox_oldest_age_seconds"
#: Counter; labels: target (stream, http). Outbox rows published (tasks).
OUTBOX_PUBLISHED_TOTAL = "flotilla_outbox_published_total"
#: Counter; labels: result (applied, duplicate, invalid). Task events consumed (data).
EVENTS_CONSUMED_TOTAL = "flotilla_events_consumed_total"
#: Counter; labels: source (personalised, popular, none). Recommendation responses (data).
RECOMMENDATIONS_TOTAL = "flotilla_recommendations_total"
#: Gauge; published outbox rows the consumer has not confirmed yet, plus unpublished
#: ones (tasks). Kept until confirmed; growing = events not reaching data's database.
EVENTS_UNCONFIRMED = "flotilla_events_unconfirmed"
#: Gauge (seconds); age of the oldest unconfirmed outbox row, 0 when none (tasks).
EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS = "flotilla_events_oldest_unconfirmed_age_seconds"
#: Counter; labels: reason (timeout: unconfirmed past TASKS_EVENTS_REPLAY_AFTER_SECONDS,
#: reset: Redis lost its data). Outbox rows published again (tasks).
EVENTS_REPLAYED_TOTAL = "flotilla_events_replayed_total"
#: Gauge; events the producer has published (or the consumer has seen) beyond the
#: consumer's confirmed sequence (data).
EVENTS_CONSUMER_LAG = "flotilla_events_consumer_lag"
#: Counter; times the consumer committed events past a missing one (a gap in the
#: sequence: an event lost or still pending), counted when the gap opens (data).
EVENTS_GAPS_DETECTED_TOTAL = "flotilla_events_gaps_detected_total"

EVENTS: tuple[str, ...] = (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE_SECONDS,
    OUTBOX_PUBLISHED_TOTAL,
    EVENTS_CONSUMED_TOTAL,
    RECOMMENDATIONS_TOTAL,
    EVENTS_UNCONFIRMED,
    EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS,
    EVENTS_REPLAYED_TOTAL,
    EVENTS_CONSUMER_LAG,
    EVENTS_GAPS_DETECTED_TOTAL,
)

#: Which service exports which event metric: the operator adds the event panels and
#: alerts to the dashboards and rules of the ServiceSpec with that name.
EVENTS_EXPORTED_BY: dict[str, tuple[str, ...]] = {
    "tasks": (OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE_SECONDS, OUTBOX_PUBLISHED_TOTAL,
              EVENTS_UNCONFIRMED, EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS, EVENTS_REPLAYED_TOTAL),
    "data": (EVENTS_CONSUMED_TOTAL, RECOMMENDATIONS_TOTAL, EVENTS_CONSUMER_LAG, EVENTS_GAPS_DETECTED_TOTAL),
}
