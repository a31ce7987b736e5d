"""Background loops for workers: repeat a step, back off with jitter on failure, stop
cooperatively.

Stopping sets a flag the loop checks between steps and interrupts its pauses; it does
not cancel a step in the middle of its I/O. That matters for redis-py, which can lose
a cancellation that lands inside a command and leave the connection unusable
(redis/redis-py#2028, #2665), and it lets a step finish its transaction. A step
that does not return within the grace period is cancelled as a last resort.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

log = structlog.get_logger("flotilla.loops")

#: One step of a loop; returns True when more work is waiting (no pause before the next).
Step = Callable[[], Awaitable[bool]]


class ServiceLoop:
    def __init__(self, name: str, step: Step, *, idle_seconds: float, backoff_max_seconds: float) -> None:
        self.name = name
        self.step = step
        self.idle_seconds = idle_seconds
        self._stopping = asyncio.Event()
        self._retrying = AsyncRetrying(
            # A worker must outlive any outage: every failure is retried, after a pause
            # drawn from [0, min(max, 0.1 * 2^n)] ("full jitter") so replicas spread out.
            retry=retry_if_exception_type(Exception),
            wait=wait_random_exponential(multiplier=min(0.1, backoff_max_seconds), max=backoff_max_seconds),
            sleep=self._pause,
            before_sleep=self._on_failure,
        )

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        while not self.stopping:
            more: bool = await self._retrying(self._step)
            if not more:
                await self._pause(self.idle_seconds)

    async def _step(self) -> bool:
        return False if self.stopping else await self.step()

    async def _pause(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _on_failure(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        # The first failure and then every tenth: an outage is one story, not a flood.
        if state.attempt_number == 1 or state.attempt_number % 10 == 0:
            log.warning("loop_step_failed", loop=self.name, attempt=state.attempt_number,
                        error_type=type(error).__name__, retry_in_s=round(state.upcoming_sleep, 2))

    @asynccontextmanager
    async def running(self, *, grace_seconds: float) -> AsyncIterator[None]:
        """Run the loop in a task while the block runs; stop it afterwards."""
        task = asyncio.create_task(self.run(), name=self.name)
        try:
            yield
        finally:
            self._stopping.set()
            done, _ = await asyncio.wait({task}, timeout=grace_seconds)
            if not done:
                log.warning("loop_stop_forced", loop=self.name, grace_seconds=grace_seconds)
                task.cancel()
                await asyncio.wait({task}, timeout=grace_seconds)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("loop_crashed", loop=self.name, error_type=type(task.exception()).__name__)
