"""Step load for finding the saturation point: add users in steps until it breaks.

Loaded next to the locustfile (``-f locustfile.py,step_shape.py``) by ``python -m
loadtest run --step``. Every ``FLOTILLA_STEP_SECONDS`` it adds ``FLOTILLA_STEP_USERS``
users, up to ``FLOTILLA_STEP_MAX_USERS``, and stops after the first step whose current
P95 exceeds ``FLOTILLA_STEP_P95_MS`` or which produced errors. New users start at
``FLOTILLA_STEP_SPAWN_RATE`` per second: each one costs auth two password hashes.
"""

from __future__ import annotations

import os
import time

from locust import LoadTestShape


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class StepShape(LoadTestShape):
    step_users = int(_env("FLOTILLA_STEP_USERS", 25))
    step_seconds = _env("FLOTILLA_STEP_SECONDS", 20)
    max_users = int(_env("FLOTILLA_STEP_MAX_USERS", 500))
    p95_target_ms = _env("FLOTILLA_STEP_P95_MS", 100)
    spawn_rate = _env("FLOTILLA_STEP_SPAWN_RATE", 5)

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # locust's own __init__ is unannotated
        self.judged_steps = 0
        self.failures_before = 0

    def tick(self) -> tuple[int, float] | None:
        step = int((time.perf_counter() - self.start_time) // self.step_seconds)
        if step > self.judged_steps:
            if self._broke():
                return None
            self.judged_steps = step
        users = (step + 1) * self.step_users
        if users > self.max_users:
            return None
        return users, self.spawn_rate

    def _broke(self) -> bool:
        """Did the step that just ended pass the P95 target or produce errors?"""
        assert self.runner is not None, "locust sets the runner before the first tick"
        total = self.runner.stats.total
        p95 = total.get_current_response_time_percentile(0.95) or 0
        failures = total.num_failures - self.failures_before
        self.failures_before = total.num_failures
        return p95 > self.p95_target_ms or failures > 0
