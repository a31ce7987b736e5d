"""The operator's own Prometheus metrics (served on FLOTILLA_OPERATOR_METRICS_PORT)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector

RECONCILES_TOTAL: Final = "flotilla_operator_reconciles_total"
FAILURES_TOTAL: Final = "flotilla_operator_reconcile_failures_total"
RECONCILE_DURATION_SECONDS: Final = "flotilla_operator_reconcile_duration_seconds"


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A registry per operator instance: tests run several operators in one process.
        self.registry = registry or CollectorRegistry(auto_describe=True)
        if registry is None:  # a registry of our own: the process, Python and GC series too
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.reconciles = Counter(
            RECONCILES_TOTAL.removesuffix("_total"),
            "Reconciliations of one part of a ServiceSpec, by part and trigger",
            ["part", "trigger"], registry=self.registry,
        )
        self.failures = Counter(
            FAILURES_TOTAL.removesuffix("_total"),
            "Reconciliations that ended in an error, by part and reason",
            ["part", "reason"], registry=self.registry,
        )
        self.duration = Histogram(
            RECONCILE_DURATION_SECONDS,
            "Time to reconcile one part of a ServiceSpec, in seconds",
            ["part"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )

    @contextmanager
    def reconcile(self, part: str, trigger: str) -> Iterator[None]:
        self.reconciles.labels(part=part, trigger=trigger).inc()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.duration.labels(part=part).observe(time.perf_counter() - started)

    def failed(self, part: str, reason: str) -> None:
        self.failures.labels(part=part, reason=reason).inc()
