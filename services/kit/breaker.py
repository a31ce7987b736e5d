"""Circuit breakers for calls to other services (purgatory, asyncio-native).

Defaults follow the seed: open after 5 consecutive failures, try again after 30 s.
An open breaker fails fast with 503 + Retry-After (the time left until half-open).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from services.kit.errors import DependencyUnavailable
from services.kit.metrics import ServiceMetrics

_STATE_VALUE = {"closed": 0, "half-opened": 1, "opened": 2}

FAILURE_THRESHOLD = 5
RECOVERY_SECONDS = 30.0


class Breakers:
    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        threshold: int = FAILURE_THRESHOLD,
        recovery_seconds: float = RECOVERY_SECONDS,
        ignore: Sequence[type[BaseException]] = (),
    ) -> None:
        self.metrics = metrics
        self.recovery_seconds = recovery_seconds
        # Exceptions in `ignore` (e.g. a 4xx from the upstream) prove it is alive.
        self.factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=recovery_seconds, exclude=list(ignore)
        )

    async def state(self, name: str) -> str:
        """closed | half-opened | opened."""
        breaker = await self.factory.get_breaker(name)
        return str(breaker.context.state)

    @asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        """Run the block under breaker ``name``; raise DependencyUnavailable when open."""
        breaker = await self.factory.get_breaker(name)
        try:
            async with breaker:
                yield
        except OpenedState as opened:
            left = opened.opened_at + self.recovery_seconds - time.time()
            raise DependencyUnavailable(name, retry_after=max(1, math.ceil(left)), shed=False,
                                        message=f"{name} is unavailable (circuit open); retry later") from None
        finally:
            state = str(breaker.context.state)
            self.metrics.breaker_state.labels(upstream=name).set(_STATE_VALUE.get(state, 0))
