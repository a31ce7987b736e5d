"""Prometheus metrics: the instrumentator's HTTP metrics plus Flotilla's own.

Each app gets its own CollectorRegistry so that several apps (tests, `flotilla up`
in one interpreter) never collide on metric registration.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info

from services.kit import metric_names as names

#: Paths whose traffic is not worth a time series (probes and scrapes).
UNINSTRUMENTED_PATHS = ["/metrics", "/health", "/health/live", "/health/ready"]


class ServiceMetrics:
    def __init__(self, service: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # A registry of our own has none of the default collectors: add the process
        # (CPU, RSS, open fds), Python platform and GC series dashboards need.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.dependency_up = Gauge(
            names.DEPENDENCY_UP, "1 when the dependency answered its last health check, else 0",
            ["dependency"], registry=self.registry,
        )
        self.cache_requests = Counter(
            names.CACHE_REQUESTS_TOTAL.removesuffix("_total"), "Cache lookups by result (hit, miss, error)",
            ["cache", "result"], registry=self.registry,
        )
        self.breaker_state = Gauge(
            names.CIRCUIT_BREAKER_STATE, "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open",
            ["upstream"], registry=self.registry,
        )
        self.db_pool_in_use = Gauge(
            names.DB_POOL_IN_USE, "Database connections checked out of the pool", registry=self.registry,
        )
        self.errors = Counter(
            names.ERRORS_TOTAL.removesuffix("_total"), "Error responses by error_code",
            ["error_code"], registry=self.registry,
        )
        # The instrumentator's two HTTP metrics, with its names and labels, defined here so
        # that a path served outside FastAPI's routing (the gateway's proxy) records into
        # the same series: ``record_request``.
        self.requests = Counter(
            names.HTTP_REQUESTS_TOTAL.removesuffix("_total"), "Total number of requests by method, status and handler.",
            ["handler", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            names.HTTP_REQUEST_DURATION_SECONDS, "Latency with only few buckets by handler, method and status.",
            ["handler", "method", "status"], buckets=names.LATENCY_BUCKETS, registry=self.registry,
        )
        self.inprogress = Gauge(
            names.HTTP_REQUESTS_INPROGRESS, "HTTP requests being served", ["method"], registry=self.registry,
        )
        # Series that exist from the start read 0 on dashboards instead of "No data".
        for result in ("hit", "miss", "error"):
            self.cache_requests.labels(cache="default", result=result)
        for code in ("internal_error", "dependency_unavailable", "validation_error", "unauthorized"):
            self.errors.labels(error_code=code)
        info = Gauge(names.SERVICE_INFO, "Always 1; labels identify the service build",
                     ["service", "version"], registry=self.registry)
        info.labels(service=service, version=version).set(1)

    def track_pool(self, checked_out: Callable[[], float]) -> None:
        self.db_pool_in_use.set_function(checked_out)

    def record_request(self, handler: str, method: str, status: str, seconds: float) -> None:
        """One served request; ``status`` grouped as the instrumentator groups it ("2xx")."""
        self.requests.labels(handler, method, status).inc()
        self.latency.labels(handler, method, status).observe(seconds)

    def _record_info(self, info: Info) -> None:
        self.record_request(info.modified_handler, info.method, info.modified_status, info.modified_duration)

    def instrument(self, app: FastAPI) -> None:
        instrumentator = Instrumentator(
            should_group_status_codes=True,
            should_ignore_untemplated=False,
            should_group_untemplated=True,
            # The instrumentator's in-progress gauge ignores `registry` (it always lands in
            # the global one), so RequestContextMiddleware keeps that gauge instead.
            should_instrument_requests_inprogress=False,
            excluded_handlers=UNINSTRUMENTED_PATHS,
            registry=self.registry,
        )
        instrumentator.add(self._record_info)
        instrumentator.instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)
