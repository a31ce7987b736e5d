"""The tasks service's outbox relay against real PostgreSQL and Redis: rows reach the
stream in order and get marked, replicas never publish a row twice, and a Redis
outage loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from services.kit.events import confirmed_key
from tests.services.conftest import running
from tests.support.events import outbox_event_ids, outbox_settles, outbox_state, tasks_app, unique_stream
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import auth_header


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database(f"relay_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def stream() -> str:
    return unique_stream()


async def stream_entries(redis_url: str, stream: str) -> list[dict[str, str]]:
    async with Redis.from_url(redis_url, decode_responses=True) as redis:
        return [fields for _id, fields in await redis.xrange(stream)]


async def test_outbox_rows_reach_the_stream_in_order_and_are_marked(
    pg_url: str, redis_server: RedisServer, stream: str, tmp_path: Path
) -> None:
    app = tasks_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream)
    alice = auth_header("alice")
    async with running(app) as client:
        ids = []
        for title in ("one", "two", "three"):
            ids.append((await client.post("/api/v1/tasks", json={"title": title}, headers=alice)).json()["id"])
        await client.patch(f"/api/v1/tasks/{ids[0]}", json={"status": "done"}, headers=alice)
        await client.delete(f"/api/v1/tasks/{ids[1]}", headers=alice)

        await eventually(outbox_settles(app, 5), message="5 events published")
        entries = await stream_entries(redis_server.url, stream)
        assert [e["event_id"] for e in entries] == await outbox_event_ids(app)
        assert [e["type"] for e in entries] == ["task.created"] * 3 + ["task.updated", "task.deleted"]
        payloads = [orjson.loads(e["payload"]) for e in entries]
        assert [(p["task_id"], p["title"]) for p in payloads[:3]] == list(zip(ids, ("one", "two", "three"),
                                                                               strict=True))
        assert payloads[3]["status"] == "done"
        assert all(p["owner_id"] == "alice" and p["event_id"] == e["event_id"]
                   for p, e in zip(payloads, entries, strict=True))

        metrics = (await client.get("/metrics")).text
        assert 'flotilla_outbox_published_total{target="stream"} 5.0' in metrics
        health = (await client.get("/health")).json()
        assert health["checks"]["events"]["status"] == "up"
        assert "flotilla_outbox_backlog 0.0" in (await client.get("/metrics")).text


async def test_two_relay_replicas_publish_every_row_exactly_once(
    pg_url: str, redis_server: RedisServer, stream: str, tmp_path: Path
) -> None:
    # Small batches, so the replicas contend for rows many times.
    first = tasks_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream,
                      relay_batch_size=3)
    second = tasks_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream,
                       relay_batch_size=3)
    async with running(first) as one, running(second) as two:
        writes = [client.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=auth_header(f"user-{i % 4}"))
                  for i in range(30) for client in (one, two)]
        assert {r.status_code for r in await asyncio.gather(*writes)} == {201}
        await eventually(outbox_settles(first, 60), message="60 events published")
        ids = [e["event_id"] for e in await stream_entries(redis_server.url, stream)]
        assert len(ids) == 60
        assert set(ids) == set(await outbox_event_ids(first))



async def test_redis_down_writes_succeed_and_every_event_is_delivered_after(
    pg_url: str, own_redis: RedisServer, stream: str, tmp_path: Path
) -> None:
    app = tasks_app(database_url=pg_url, redis_url=own_redis.url, data_dir=tmp_path, events_stream=stream,
                    redis_timeout_seconds=0.3)
    alice = auth_header("alice")
    async with running(app) as client:
        own_redis.stop()
        for i in range(12):
            response = await client.post("/api/v1/tasks", json={"title": f"during outage {i}"}, headers=alice)
            assert response.status_code == 201, response.text
        assert (await outbox_state(app))["published"] == 0
        # Still serving, and saying why events are stuck.
        assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert (await client.get("/health")).json()["checks"]["redis"]["status"] == "down"

        own_redis.start()  # empty: it had no persistence
        await eventually(outbox_settles(app, 12), message="12 events published")
        ids = [e["event_id"] for e in await stream_entries(own_redis.url, stream)]
        assert sorted(ids) == sorted(await outbox_event_ids(app))  # none lost, none twice


async def test_published_rows_are_pruned_after_the_retention_once_confirmed_and_unpublished_never(
    pg_url: str, own_redis: RedisServer, stream: str, tmp_path: Path
) -> None:
    app = tasks_app(database_url=pg_url, redis_url=own_redis.url, data_dir=tmp_path, events_stream=stream,
                    redis_timeout_seconds=0.3, outbox_retention_seconds=0, outbox_prune_interval_seconds=0.05,
                    events_confirm_interval_seconds=0.05)
    alice = auth_header(f"alice-{uuid.uuid4().hex[:6]}")
    async with running(app) as client:
        for i in range(3):
            assert (await client.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=alice)).status_code == 201
        await eventually(outbox_settles(app, 3), message="3 events published")
        # Published is not enough: a row goes once the consumer has confirmed its number.
        async with Redis.from_url(own_redis.url) as redis:
            await redis.set(confirmed_key(stream), 2)
        await eventually(outbox_settles(app, 1), message="the 2 confirmed rows pruned")
        async with Redis.from_url(own_redis.url) as redis:
            await redis.set(confirmed_key(stream), 3)

        async def emptied() -> bool:
            return await outbox_state(app) == {"published": 0, "unpublished": 0}

        await eventually(emptied, message="published rows pruned")
        assert len(await stream_entries(own_redis.url, stream)) == 3  # delivered before they went

        own_redis.stop()  # nothing can be published now: the rows must stay
        for i in range(2):
            assert (await client.post("/api/v1/tasks", json={"title": f"u{i}"}, headers=alice)).status_code == 201
        await asyncio.sleep(0.5)  # many prune intervals
        assert await outbox_state(app) == {"published": 0, "unpublished": 2}
