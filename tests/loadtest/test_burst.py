"""`python -m loadtest burst` at a tiny size, against real PostgreSQL and Redis.

Behaviour only: every user's register and login went through the gateway and was
classified, the breaker was read during and after the burst, the normal login after it
was made, and auth ran with its default hashing parameters. No timing thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.burst import ENDPOINTS, ERROR_CLASSES, OK, SHED, auth_default_env, burst_mode
from services.auth.settings import AuthSettings
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

USERS = 10


def test_burst_classifies_every_answer_and_checks_the_breaker(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    summary = burst_mode(users=USERS, rate=20, retry=True, database_url=postgres_server.dsn(),
                         redis_url=redis_server.url, out_dir=tmp_path)

    assert set(summary["endpoints"]) == set(ENDPOINTS)
    for name, row in summary["endpoints"].items():
        assert row["requests"] >= (USERS if "register" in name else 1), name
        assert row["requests"] == row[OK] + row[SHED] + sum(row[k] for k in ERROR_CLASSES), name
        assert sum(row["statuses"].values()) + row["transport error"] == row["requests"], name
        assert row["p50_ms"] is not None, name
    assert 0 <= summary["users_completed"] <= USERS
    assert summary["breaker_seen_during"]
    assert summary["after"]["breaker"] != ""
    assert isinstance(summary["after"]["login_ms"], float)
    assert summary["cpu_ms_per_request"]["auth"] > 0
    assert set(summary["target"]) == {"no_errors", "no_504", "breaker_never_opened", "login_after_ok"}
    assert json.loads((tmp_path / "burst.json").read_text())["users"] == USERS


def test_the_burst_forces_auths_default_hashing_parameters() -> None:
    env = auth_default_env()
    assert env["AUTH_PASSWORD_HASH_MEMORY_KIB"] == str(AuthSettings.model_fields["password_hash_memory_kib"].default)
    assert env["AUTH_PASSWORD_HASH_TIME_COST"] == str(AuthSettings.model_fields["password_hash_time_cost"].default)
