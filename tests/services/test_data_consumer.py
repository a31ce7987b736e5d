"""The data service's Redis Streams consumer against real PostgreSQL and Redis:
idempotent by event id, pending entries reclaimed after a crash, poison entries
skipped, and the consumer group recreated after Redis loses it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.kit.events import DATA_GROUP, stream_fields
from tests.services.conftest import running
from tests.support.events import data_app, event, unique_stream
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import auth_header


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database(f"data_consumer_{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def redis(redis_server: RedisServer):
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def stream() -> str:
    return unique_stream()


@pytest.fixture
def alice() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


def stats_probe(client: httpx.AsyncClient, user: str):
    async def probe() -> dict[str, Any]:
        response = await client.get("/api/v1/stats/me", headers=auth_header(user))
        assert response.status_code == 200, response.text
        return dict(response.json())
    return probe


def stats_when(client: httpx.AsyncClient, user: str, accept: Callable[[dict[str, Any]], bool]):
    """A check for ``eventually``: ``user``'s stats, once ``accept`` holds for them."""
    async def check() -> dict[str, Any] | None:
        stats = await stats_probe(client, user)()
        return stats if accept(stats) else None
    return check


def consumed(metrics: str, result: str) -> float:
    prefix = f'flotilla_events_consumed_total{{result="{result}"}} '
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


async def pending(redis: Redis, stream: str) -> int:
    return int((await redis.xpending(stream, DATA_GROUP))["pending"])


async def none_pending(redis: Redis, stream: str) -> bool:
    return await pending(redis, stream) == 0


async def test_the_same_event_delivered_twice_counts_once(
    pg_url: str, redis_server: RedisServer, redis: Redis, stream: str, alice: str, tmp_path: Path
) -> None:
    app = data_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream)
    async with running(app) as client:
        first, second = event(alice, title="one"), event(alice, title="two")
        for payload in (first, first, second, first):  # at-least-once: redeliveries happen
            await redis.xadd(stream, stream_fields(payload))
        await eventually(lambda: none_pending(redis, stream), message="no pending entries")
        stats = await eventually(stats_when(client, alice, lambda s: s["created"] >= 2))
        assert (stats["created"], stats["open"]) == (2, 2)
        metrics = (await client.get("/metrics")).text
        assert (consumed(metrics, "applied"), consumed(metrics, "duplicate")) == (2.0, 2.0)


async def test_pending_entries_of_a_crashed_consumer_are_reclaimed(
    pg_url: str, redis_server: RedisServer, redis: Redis, stream: str, alice: str, tmp_path: Path
) -> None:
    await redis.xgroup_create(stream, DATA_GROUP, id="0", mkstream=True)
    task = uuid.uuid4()
    events = [event(alice, task_id=task, title="reclaimed", priority="high"),
              event(alice, title="also reclaimed"),
              event(alice, type="task.updated", task_id=task, title="reclaimed", priority="high", status="done")]
    for payload in events:
        await redis.xadd(stream, stream_fields(payload))
    # A consumer reads the entries and dies before acknowledging them.
    read = await redis.xreadgroup(DATA_GROUP, "crashed-pod-1", {stream: ">"}, count=10)
    assert len(read[0][1]) == 3
    assert await pending(redis, stream) == 3

    app = data_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream,
                   consumer_name="survivor", consumer_claim_idle_ms=50, consumer_claim_interval_seconds=0.1)
    async with running(app) as client:
        stats = await eventually(stats_when(client, alice, lambda s: s["created"] == 2 and s["done"] == 1))
        assert (stats["open"], stats["by_priority"]["high"]) == (1, 1)
        await eventually(lambda: none_pending(redis, stream), message="no pending entries")
        consumers = {c["name"]: c["pending"] for c in await redis.xinfo_consumers(stream, DATA_GROUP)}
        assert consumers["crashed-pod-1"] == 0
        metrics = (await client.get("/metrics")).text
        assert consumed(metrics, "applied") == 3.0


async def test_a_malformed_entry_is_acknowledged_and_does_not_block_the_rest(
    pg_url: str, redis_server: RedisServer, redis: Redis, stream: str, alice: str, tmp_path: Path
) -> None:
    app = data_app(database_url=pg_url, redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream)
    async with running(app) as client:
        await redis.xadd(stream, {"event_id": "x", "type": "task.created", "payload": "{not json"})
        await redis.xadd(stream, {"unexpected": "shape"})
        await redis.xadd(stream, stream_fields(event(alice)))
        await eventually(stats_when(client, alice, lambda s: s["created"] == 1))
        await eventually(lambda: none_pending(redis, stream), message="no pending entries")
        assert consumed((await client.get("/metrics")).text, "invalid") == 2.0



async def test_redis_restart_recreates_the_group_and_stats_keep_serving(
    pg_url: str, own_redis: RedisServer, stream: str, alice: str, tmp_path: Path
) -> None:
    app = data_app(database_url=pg_url, redis_url=own_redis.url, data_dir=tmp_path, events_stream=stream,
                   redis_timeout_seconds=0.3)

    async def publish(payload: dict[str, Any]) -> None:
        async with Redis.from_url(own_redis.url, decode_responses=True) as producer:
            await producer.xadd(stream, stream_fields(payload))

    async with running(app) as client:
        await publish(event(alice))
        await eventually(stats_when(client, alice, lambda s: s["created"] == 1))

        own_redis.stop()
        assert (await stats_probe(client, alice)())["created"] == 1  # reads need only the database
        report = (await client.get("/health")).json()
        assert report["status"] == "degraded"
        assert report["checks"]["redis"]["status"] == "down"

        own_redis.start()  # no persistence: the stream and the group are gone
        await publish(event(alice))
        await eventually(stats_when(client, alice, lambda s: s["created"] == 2))
