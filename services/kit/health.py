"""Health endpoints: liveness (process), readiness (critical deps), full report.

``/health/live``  -- 200 while the process can answer; never touches dependencies,
                     so a database outage never gets pods restarted.
``/health/ready`` -- 200 when every *critical* dependency answers; 503 otherwise and
                     while draining for shutdown, so traffic moves away first. The
                     dependency checks' result is reused for ``READY_CACHE_SECONDS``, and
                     concurrent probes share one run: probes (or a flood of them on
                     the public port) never multiply the load on the dependencies.
``/health``       -- every check: healthy | degraded (a non-critical dep is down) |
                     unhealthy (a critical one is). Served on the metrics port only
                     (``services.kit.ports``): it calls every dependency each time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.kit.metrics import ServiceMetrics

CheckFn = Callable[[], Awaitable[None]]
#: Extra fields for a check's entry in the report (e.g. a circuit breaker's state),
#: added whether the check passed or not.
DescribeFn = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HealthCheck:
    name: str
    check: CheckFn
    #: Readiness fails while a critical check fails; a failing non-critical check
    #: only degrades the report (the service still serves, e.g. without its cache).
    critical: bool
    timeout_seconds: float = 2.0
    describe: DescribeFn | None = None


#: How long a readiness result is reused.
READY_CACHE_SECONDS = 1.0
#: Every check runs in the background this often, so ``flotilla_dependency_up`` has a
#: sample for every dependency whether or not anyone calls /health (probes call only
#: /health/ready, which runs the critical checks: the gateway has none).
DEPENDENCY_REFRESH_SECONDS = 15.0


class Health:
    def __init__(self, metrics: ServiceMetrics, *, retry_after_seconds: int) -> None:
        self.metrics = metrics
        self.retry_after_seconds = retry_after_seconds
        self.checks: list[HealthCheck] = []
        self.draining = False
        self._ready: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._ready_lock = asyncio.Lock()

    def add(self, name: str, check: CheckFn, *, critical: bool, timeout_seconds: float = 2.0,
            describe: DescribeFn | None = None) -> None:
        self.checks.append(HealthCheck(name, check, critical, timeout_seconds, describe))

    async def _run_one(self, check: HealthCheck) -> dict[str, Any]:
        result = await self._probe(check)
        if check.describe is not None:
            result.update(await check.describe())
        return result

    async def _probe(self, check: HealthCheck) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check.check(), timeout=check.timeout_seconds)
        except Exception as exc:  # any failure means "down"; the type tells operators why
            self.metrics.dependency_up.labels(dependency=check.name).set(0)
            error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return {"status": "down", "critical": check.critical, "error": error}
        self.metrics.dependency_up.labels(dependency=check.name).set(1)
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return {"status": "up", "critical": check.critical, "latency_ms": latency_ms}

    async def run(self, *, critical_only: bool = False) -> dict[str, dict[str, Any]]:
        selected = [c for c in self.checks if c.critical or not critical_only]
        results = await asyncio.gather(*(self._run_one(c) for c in selected))
        return {c.name: r for c, r in zip(selected, results, strict=True)}

    async def refresh(self) -> bool:
        """Run every check (a ServiceLoop step): their gauges stay current."""
        await self.run()
        return False

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """The critical checks' results, at most ``READY_CACHE_SECONDS`` old."""
        if self._ready is not None and time.monotonic() - self._ready[0] < READY_CACHE_SECONDS:
            return self._ready[1]
        async with self._ready_lock:  # one run for all the probes waiting on it
            if self._ready is not None and time.monotonic() - self._ready[0] < READY_CACHE_SECONDS:
                return self._ready[1]
            results = await self.run(critical_only=True)
            self._ready = (time.monotonic(), results)
            return results

    @staticmethod
    def overall(results: dict[str, dict[str, Any]]) -> Literal["healthy", "degraded", "unhealthy"]:
        down = [r for r in results.values() if r["status"] != "up"]
        if any(r["critical"] for r in down):
            return "unhealthy"
        return "degraded" if down else "healthy"

    def router(self) -> APIRouter:
        router = APIRouter(tags=["health"], include_in_schema=False)
        retry_after = {"Retry-After": str(self.retry_after_seconds)}

        @router.get("/health/live")
        async def live() -> dict[str, str]:
            return {"status": "alive"}

        @router.get("/health/ready")
        async def ready() -> JSONResponse:
            if self.draining:
                return JSONResponse({"status": "draining", "checks": {}}, status_code=503, headers=retry_after)
            results = await self.readiness()
            ok = all(r["status"] == "up" for r in results.values())
            return JSONResponse({"status": "ready" if ok else "not_ready", "checks": results},
                                status_code=200 if ok else 503, headers=None if ok else retry_after)

        @router.get("/health")
        async def report(request: Request) -> JSONResponse:
            results = await self.run()
            status = self.overall(results)
            body = {
                "status": status,
                "service": request.app.title,
                "version": request.app.version,
                "draining": self.draining,
                "checks": results,
            }
            return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)

        return router
