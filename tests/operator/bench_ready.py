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
from flotilla_operator import spec
from flotilla_operator.handlers import build_context
from flotilla_operator.settings import OperatorSettings

from tests.operator.harness import (
    SERVICESPECS,
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
            async with running_operator(settings) as ctx:
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
                        # Read the emulator's memory: polling it over HTTP would load the
                        # API server the operator is being measured against.
                        try:
                            obj = server.objects[SERVICESPECS, "bench", name]
                        except KeyError:
                            continue
                        if not obj.deleted and (obj.get("status") or {}).get("phase") == "Ready":
                            ready_at[name] = time.perf_counter()
                    await asyncio.sleep(0.02)
                total = time.perf_counter() - started
                durations = {}
                for metric in ctx.metrics.duration.collect():
                    sums = {s.labels["part"]: s.value for s in metric.samples if s.name.endswith("_sum")}
                    counts = {s.labels["part"]: s.value for s in metric.samples if s.name.endswith("_count")}
                    durations = {p: sums[p] / counts[p] for p in sums if counts.get(p)}
                objects_held = sum(1 for _ in server.objects)
        finally:
            await cluster.close()
    latencies = sorted(ready_at[n] - applied_at[n] for n in ready_at) or [float("nan")]
    print(f"  mean reconcile seconds by part: { {k: round(v, 3) for k, v in durations.items()} }; "
          f"objects in the emulator: {objects_held}", flush=True)
    return {
        "count": count, "ready": len(latencies), "total_s": total,
        "min_s": latencies[0], "median_s": statistics.median(latencies),
        "p95_s": latencies[max(0, int(len(latencies) * 0.95) - 1)], "max_s": latencies[-1],
    }


async def measure_backends(count: int, settings: OperatorSettings) -> float:
    """The same provisioning without any API server: database+role and ACL user for
    ``count`` services at once, as the handlers do it. Separates the servers' share
    of the time from the emulator's."""
    ctx = build_context(settings)
    specs = [spec.parse({"metadata": {"name": unique_name("direct"), "namespace": "bench"}, "spec": {}})
             for _ in range(count)]
    started = time.perf_counter()

    async def one(s: spec.ServiceSpec) -> None:
        await ctx.postgres.ensure(s.database, owner=s.owner, password=None)
        await ctx.redis.ensure(s.redis, password=None)
    await asyncio.gather(*(one(s) for s in specs))
    await ctx.redis.close()
    return time.perf_counter() - started


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
        for count in counts:
            seconds = await measure_backends(count, settings)
            print(f"  PostgreSQL+Redis provisioning alone, {count} at once: {seconds:.2f}s", flush=True)
    finally:
        postgres.cleanup()
        redis.cleanup()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 50]))
