"""Recommendations degrade instead of failing when PostgreSQL goes away (real servers)."""

from __future__ import annotations

from pathlib import Path

from tests.services.conftest import running
from tests.support.data_client import ingest, popular_once, recommendations
from tests.support.events import data_app, event
from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import auth_header


async def test_postgres_down_falls_back_to_cached_popular_items_then_recovers(
    own_postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    # A generous time budget: here the steps fail because PostgreSQL is gone, not on time.
    # popular_min_users=3 keeps this test's popular cache key apart from other tests'; the
    # events are from now, so every user counts at once.
    app = data_app(database_url=own_postgres.create_database("data"), redis_url=redis_server.url,
                   data_dir=tmp_path, popular_min_users=3, popular_min_user_age_seconds=0,
                   recommendations_timeout_seconds=5,
                   db_pool_timeout_seconds=1)
    async with running(app) as client:
        events = [event(user, title="Stretch") for user in ("ann", "ben", "cid")] + [event("ann", title="Mine")]
        assert (await ingest(client, *events))["applied"] == 4
        assert (await recommendations(client, "ann"))["source"] == "personalised"
        warm = await popular_once(client, "dee")  # no tasks: popular, cached in Redis

        own_postgres.stop()
        degraded = await recommendations(client, "ann")
        assert degraded == {**warm, "user_id": "ann"}
        stats = await client.get("/api/v1/stats/me", headers=auth_header("ann"))
        assert stats.status_code == 503
        assert stats.json()["error_code"] == "dependency_unavailable"
        assert "retry-after" in stats.headers

        own_postgres.start()
        assert (await client.get("/health/ready")).status_code == 200
        assert (await recommendations(client, "ann"))["source"] == "personalised"
