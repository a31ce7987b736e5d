"""Benchmark: time from `kubectl apply` of ServiceSpecs to phase Ready.

Real PostgreSQL and Redis (started here, as the tests do), the real operator, kmock as
the API server. Prints figures; asserts nothing.

    python -m tests.operator.bench_ready            # 1 and 50 ServiceSpecs
    python -m tests.operator.bench_ready 1 10 100
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kmock

from flotilla_operator.settings import OperatorSettings
from tests.operator.harness import (
    Cluster,
    EmulatedAPIServer,
    declare_resources,
    running_operator,
    unique_name,
    write_kubeconfig,
)
from tests.support.servers import PostgresServer, RedisServer


async def measure(count: int, settings: OperatorSettings) -> dict[str, float]:
    async with EmulatedAPIServer() as server, kmock.Server(server):
        declare_resources(server, monitoring=True)
        os.environ["KUBECONFIG"] = str(write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", str(server.url)))
        cluster = Cluster(server)
        try:
            async with running_operator(settings):
                names = [unique_name("bench") for _ in range(count)]
                ready_at: dict[str, float] = {}
                started = time.perf_counter()
                applied_at = {}
                for name in names:
                    applied_at[name] = time.perf_counter()
                    await cluster.apply("bench", name)
                deadline = started + 300
                while len(ready_at) < count and time.perf_counter() < deadline:
                    for name in names:
                        if name in ready_at:
                            continue
                        obj = await cluster.get("bench", name)
                        if ((obj or {}).get("status") or {}).get("phase") == "Ready":
                            ready_at[name] = time.perf_counter()
                    await asyncio.sleep(0.01)
                total = time.perf_counter() - started
        finally:
            await cluster.close()
    latencies = sorted(ready_at[n] - applied_at[n] for n in ready_at) or [float("nan")]
    return {
        "count": count, "ready": len(latencies), "total_s": total,
        "min_s": latencies[0], "median_s": statistics.median(latencies),
        "p95_s": latencies[max(0, int(len(latencies) * 0.95) - 1)], "max_s": latencies[-1],
    }


async def main(counts: list[int]) -> None:
    postgres, redis = PostgresServer(), RedisServer()
    postgres.start()
    redis.start()
    try:
        settings = OperatorSettings(
            postgres_admin_dsn=postgres.dsn("postgres", driver="postgresql"), redis_admin_url=redis.url,
            metrics_port=0, drift_interval_seconds=60, drift_idle_seconds=10,
        )
        print(f"{'specs':>6} {'ready':>6} {'total s':>8} {'min s':>7} {'median s':>9} {'p95 s':>7} {'max s':>7}")
        for count in counts:
            r = await measure(count, settings)
            print(f"{r['count']:>6} {r['ready']:>6} {r['total_s']:>8.2f} {r['min_s']:>7.2f} "
                  f"{r['median_s']:>9.2f} {r['p95_s']:>7.2f} {r['max_s']:>7.2f}", flush=True)
    finally:
        postgres.cleanup()
        redis.cleanup()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 50]))
