"""A few seconds of the reference workload through the runner, against the real stack.

Behaviour only: requests were made along the whole path (register, login, list,
create) and none failed. How fast is the benchmark's business, not a test's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.names import CREATE_TASK, LIST_TASKS, LOGIN, REGISTER
from loadtest.runner import run
from loadtest.stack import runnable_services
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

USERS = 4


def test_reference_workload_runs_without_failures(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    summary = run(users=USERS, spawn_rate=USERS, duration=6, database_url=postgres_server.dsn(),
                  redis_url=redis_server.url, out_dir=tmp_path)

    requests = {row["name"]: row["requests"] for row in summary["endpoints"]}
    assert requests[REGISTER] == USERS
    assert requests[LOGIN] == USERS
    assert requests[LIST_TASKS] > 0
    assert requests[CREATE_TASK] > 0
    assert summary["failures"] == []
    assert all(row["failures"] == 0 for row in summary["endpoints"])
    # Every service process was watched, and the artefacts a reader opens exist.
    assert {p["name"] for p in summary["processes"]} >= {s.name for s in runnable_services()}
    for artefact in ("summary.json", "table.csv", "report.html", "latency_rps.png", "locust_stats_history.csv"):
        assert (tmp_path / artefact).stat().st_size > 0
