"""`python -m loadtest bench` with tiny durations, against real PostgreSQL and Redis.

Behaviour only: every target answered requests without errors (the scripts send valid
tokens, cursors and bodies), and every target reports CPU time for each process it
involves, including PostgreSQL and Redis, and PostgreSQL's session and transaction counts
where it is involved. How fast is the benchmark's business, not a
test's: no figure is compared with a threshold.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtest.bench import bench
from services.kit import catalog
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(150)]

TARGETS = [f"({n})" for n in range(1, 9)]
STACK = {*(s.name for s in catalog.SERVICES), "redis", "postgres"}


@pytest.mark.usefixtures("wrk")
def test_every_target_reports_requests_and_cpu_per_process(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    summary = bench(connections=4, seconds=1, warmup_seconds=0, users=2, database_url=postgres_server.dsn(),
                    redis_url=redis_server.url, out_dir=tmp_path, measure_up=False)

    results = {r["name"].split()[0]: r for r in summary["results"]}
    assert list(results) == TARGETS
    for key, result in results.items():
        assert result["requests"] > 0, key
        assert result["errors"] == 0, key
        assert result["cpu_total_ms"] > 0, key
        assert all(ms >= 0 for ms in result["cpu_ms"].values()), key
    # Each target charges the processes it involves; a stack target all of the stack's.
    assert set(results["(1)"]["cpu_ms"]) == {"fastapi"}
    assert set(results["(5)"]["cpu_ms"]) == {"proxy", "fastapi"}
    assert set(results["(6)"]["cpu_ms"]) == {"fastapi+asyncpg", "postgres"}
    for key in ("(3)", "(4)", "(7)", "(8)"):
        assert set(results[key]["cpu_ms"]) >= STACK, key
    # PostgreSQL's own counters are read for every target that uses it, and only those.
    for key, result in results.items():
        uses_postgres = key in {"(3)", "(4)", "(6)", "(7)", "(8)"}
        assert (result["pg_sessions"] is not None) is uses_postgres, key
        assert (result["pg_xacts_per_request"] is not None) is uses_postgres, key
    assert results["(6)"]["pg_xacts"] > 0
    assert summary["tasks_cache_on_repeat_get"] == "hit"
    assert all(value is not None for value in summary["ratios"].values())
    assert summary["cpu_x_baseline"][results["(1)"]["name"]]["total"] == 1.0
    with (tmp_path / "bench.csv").open(newline="") as handle:
        assert [row["target"].split()[0] for row in csv.DictReader(handle)] == TARGETS
