"""`python -m loadtest scale` at tiny sizes, against real PostgreSQL and Redis.

Behaviour only: the rows were seeded straight into both services' tables (growing by
top-up), and at every size every target answered requests without errors and reports
CPU per process. No timing thresholds: flat or not is the benchmark's business.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.scale import TARGETS, scale_mode
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(150)]

SIZES = [100, 1000]
USERS = 2


@pytest.mark.usefixtures("wrk")
def test_every_size_seeds_rows_and_measures_every_target(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    summary = scale_mode(sizes=SIZES, owners=50, users=USERS, connections=2, seconds=1, warmup_seconds=0,
                         database_url=postgres_server.dsn(), redis_url=redis_server.url, out_dir=tmp_path)

    assert list(summary["results"]) == [str(s) for s in SIZES]
    for size in SIZES:
        rows = summary["seeding"][str(size)]["rows"]
        # The seeded rows, on top of the registered users' own tasks (and those created while measuring).
        assert rows["tasks"] >= size
        assert rows["task_snapshots"] >= size
        results = summary["results"][str(size)]
        assert [r["target"] for r in results] == list(TARGETS)
        for result in results:
            assert result["requests"] > 0, (size, result["target"])
            assert result["errors"] == 0, (size, result["target"])
            assert set(result["cpu_ms"]) >= {"gateway", "tasks", "data", "redis", "postgres"}, result["target"]
    assert json.loads((tmp_path / "scale.json").read_text())["owners"] == 50
