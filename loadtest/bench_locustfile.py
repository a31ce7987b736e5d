"""Max-throughput fallback load generator for the benchmark when wrk is unavailable.

No think time: every user sends its next request as soon as the last one answers, so
the user count is the concurrency, as with wrk's connections.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, task


class BenchUser(FastHttpUser):
    wait_time = constant(0)
    path = os.environ.get("FLOTILLA_BENCH_PATH", "/api/v1/tasks")
    token = os.environ.get("FLOTILLA_BENCH_TOKEN", "")

    @task
    def get(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client.get(self.path, headers=headers, name=self.path)
