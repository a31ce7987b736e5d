"""Circuit breakers for calls to other services (purgatory, asyncio-native).

Open after 5 consecutive failures. An open breaker half-opens after a short wait that
doubles with each failed trial (0.5 s, 1 s, 2 s ... up to 30 s) and starts again from
the short wait once a trial succeeds: a dependency that is back is tried within about
a second instead of after a fixed 30 s, and one that stays down is probed ever less
often. An open breaker fails fast with 503 + Retry-After (the time left until half-open).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import Context, OpenedState

from services.kit.errors import DependencyUnavailable
from services.kit.metrics import ServiceMetrics

_STATE_VALUE = {"closed": 0, "half-opened": 1, "opened": 2}

FAILURE_THRESHOLD = 5
#: The wait before the first trial after the breaker opens.
FIRST_RECOVERY_SECONDS = 0.5
#: The longest wait between trials, reached by doubling after each failed trial.
RECOVERY_SECONDS = 30.0


class Breakers:
    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        threshold: int = FAILURE_THRESHOLD,
        recovery_seconds: float = RECOVERY_SECONDS,
        first_recovery_seconds: float = FIRST_RECOVERY_SECONDS,
        ignore: Sequence[type[BaseException]] = (),
    ) -> None:
        self.metrics = metrics
        self.recovery_seconds = recovery_seconds
        self.first_recovery_seconds = min(first_recovery_seconds, recovery_seconds)
        # Exceptions in `ignore` (e.g. a 4xx from the upstream) prove it is alive.
        self.factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=self.first_recovery_seconds, exclude=list(ignore)
        )
        #: Per breaker: openings since it was last closed, and when the last one happened.
        self._openings: dict[str, tuple[int, float | None]] = {}

    async def state(self, name: str) -> str:
        """closed | half-opened | opened."""
        breaker = await self.factory.get_breaker(name)
        return str(breaker.context.state)

    def _follow(self, name: str, context: Context) -> None:
        """Set the wait of a breaker that just (re)opened; forget the streak once it closed.

        purgatory waits a fixed per-circuit ``ttl`` and has no backoff of its own, so
        this sets that ttl (the library's own knob, read when the next request arrives)
        to the next step of the schedule each time the breaker opens anew.
        """
        streak, opened_at = self._openings.get(name, (0, None))
        if context.state == "opened" and context.opened_at != opened_at:
            context.ttl = min(self.recovery_seconds, self.first_recovery_seconds * 2 ** streak)
            self._openings[name] = (streak + 1, context.opened_at)
        elif context.state == "closed" and streak:
            context.ttl = self.first_recovery_seconds
            del self._openings[name]

    @asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        """Run the block under breaker ``name``; raise DependencyUnavailable when open."""
        breaker = await self.factory.get_breaker(name)
        try:
            async with breaker:
                yield
        except OpenedState as opened:
            left = opened.opened_at + breaker.context.ttl - time.time()
            raise DependencyUnavailable(name, retry_after=max(1, math.ceil(left)), shed=False,
                                        message=f"{name} is unavailable (circuit open); retry later") from None
        finally:
            self._follow(name, breaker.context)
            state = str(breaker.context.state)
            self.metrics.breaker_state.labels(upstream=name).set(_STATE_VALUE.get(state, 0))
