"""End-to-end delivery, piece by piece: the consumer's confirmed sequence advances only
over an unbroken run of committed events (in any arrival order, duplicates included),
and the relay keeps, replays and prunes by it."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
from fastapi import FastAPI
from redis.asyncio import Redis

from services.data.projection import ApplyResult, apply_events, confirmed_sequence, forget_processed_before
from services.kit.events import (
    INGEST_PATH,
    INTERNAL_TOKEN_HEADER,
    TASK_EVENTS_PRODUCER,
    TaskEvent,
    confirmed_key,
    epoch_key,
)
from tests.services.conftest import running
from tests.support.events import INTERNAL_TOKEN, data_app, event, outbox_settles, tasks_app, unique_stream
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import auth_header


def numbered(seq: int, *, event_id: uuid.UUID | None = None) -> TaskEvent:
    return TaskEvent.model_validate({**event("owner-seq", event_id=event_id), "seq": seq})


async def apply(app: FastAPI, events: list[TaskEvent]) -> ApplyResult:
    async with app.state.kit.database.session() as session, session.begin():
        return await apply_events(session, events)


async def test_the_confirmed_sequence_covers_only_an_unbroken_run(database_url: str, tmp_path: Path) -> None:
    app = data_app(database_url=database_url, data_dir=tmp_path)
    async with running(app):
        first = await apply(app, [numbered(2), numbered(1)])
        assert (first.confirmed_seq, first.gap) == (2, False)

        ahead = await apply(app, [numbered(4), numbered(6)])  # 3 and 5 missing
        assert (ahead.confirmed_seq, ahead.highest_seq, ahead.gap) == (2, 6, True)

        three = uuid.uuid4()
        filled = await apply(app, [numbered(3, event_id=three)])
        assert (filled.confirmed_seq, filled.gap) == (4, False)  # up to the next hole

        again = await apply(app, [numbered(3, event_id=three), numbered(5)])  # a replay and the last one
        assert again.duplicates == 1
        assert (again.confirmed_seq, again.gap) == (6, False)

        unnumbered = await apply(app, [TaskEvent.model_validate(event("owner-seq"))])
        assert unnumbered.confirmed_seq is None  # events from before numbering change nothing
        async with app.state.kit.database.session() as session:
            assert await confirmed_sequence(session, TASK_EVENTS_PRODUCER) == 6

        # Ids past the confirmed sequence outlive the de-duplication retention: the
        # sequence must still advance over them once the gap before them is filled.
        await apply(app, [numbered(8)])
        async with app.state.kit.database.session() as session, session.begin():
            await forget_processed_before(session, days=-1)  # "older than tomorrow": everything
        assert (await apply(app, [numbered(7)])).confirmed_seq == 8


async def test_the_relay_keeps_unconfirmed_rows_and_replays_them_after_the_timeout_and_on_a_reset(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    stream = unique_stream()
    app = tasks_app(database_url=postgres_server.create_database(f"seq_{uuid.uuid4().hex[:10]}"),
                    redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream,
                    events_replay_after_seconds=0.3, events_confirm_interval_seconds=0.05,
                    outbox_retention_seconds=0, outbox_prune_interval_seconds=0.05)
    alice = auth_header(f"alice-{uuid.uuid4().hex[:6]}")
    async with running(app) as client, Redis.from_url(redis_server.url, decode_responses=True) as redis:
        await redis.set(confirmed_key(stream), 0)  # a consumer that has committed nothing yet
        for i in range(3):
            assert (await client.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=alice)).status_code == 201
        await eventually(outbox_settles(app, 3))
        assert [orjson.loads(f["payload"])["seq"] for _, f in await redis.xrange(stream)][:3] == [1, 2, 3]

        async def replayed(reason: str) -> bool:
            metrics = (await client.get("/metrics")).text
            line = next(line for line in metrics.splitlines()
                        if line.startswith(f'flotilla_events_replayed_total{{reason="{reason}"}}'))
            return float(line.split()[-1]) >= 3

        await eventually(lambda: replayed("timeout"), message="unconfirmed rows published again")
        assert await outbox_settles(app, 3)()  # kept: unconfirmed rows are never pruned

        # Redis loses its data: the epoch key goes with it, and the relay replays at once.
        await redis.delete(stream, epoch_key(stream), confirmed_key(stream))
        await eventually(lambda: replayed("reset"), message="rows replayed after the reset")
        assert {orjson.loads(f["payload"])["seq"] for _, f in await redis.xrange(stream)} == {1, 2, 3}

        await redis.set(confirmed_key(stream), 3)
        await eventually(outbox_settles(app, 0), message="confirmed rows pruned")


async def test_data_health_is_degraded_while_the_lag_exceeds_the_threshold(tmp_path: Path) -> None:
    """Over the HTTP ingest (embedded mode): a gap keeps the lag up, /health says so, and the
    missing event closes it; the ingest answers the confirmed sequence the relay prunes by."""
    app = data_app(database_url=f"sqlite+aiosqlite:///{tmp_path / 'data.db'}", data_dir=tmp_path, events_max_lag=1)
    token = {INTERNAL_TOKEN_HEADER: INTERNAL_TOKEN}
    first = {**event("owner-lag"), "seq": 1}
    later = [{**event("owner-lag"), "seq": seq} for seq in (2, 3, 4)]
    async with running(app) as client:
        ingested = await client.post(INGEST_PATH, json={"events": later}, headers=token)
        assert ingested.json()["confirmed_seq"] == 0  # 1 is missing: nothing confirmed yet
        report = (await client.get("/health")).json()
        assert report["status"] == "degraded"
        assert report["checks"]["events"] | {"latency_ms": None} == {
            "status": "down", "critical": False, "error": "LagTooHigh", "lag": 4, "confirmed_seq": 0,
            "latency_ms": None}
        metrics = (await client.get("/metrics")).text
        assert "flotilla_events_consumer_lag 4.0" in metrics
        assert "flotilla_events_gaps_detected_total 1.0" in metrics

        ingested = await client.post(INGEST_PATH, json={"events": [first]}, headers=token)
        assert ingested.json()["confirmed_seq"] == 4
        report = (await client.get("/health")).json()
        assert report["status"] == "healthy"
        assert report["checks"]["events"]["lag"] == 0


async def test_events_can_live_in_a_redis_of_their_own(
    postgres_server: PostgresServer, redis_server: RedisServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    """EVENTS_REDIS_URL: the stream (and its keys) in one Redis, the caches in another."""
    stream, tag = unique_stream(), uuid.uuid4().hex[:8]
    owner = f"owner-{tag}"
    common = {"redis_url": redis_server.url, "events_redis_url": own_redis.url, "data_dir": tmp_path,
              "events_stream": stream}
    tasks = tasks_app(database_url=postgres_server.create_database(f"own_tasks_{tag}"), **common)
    data = data_app(database_url=postgres_server.create_database(f"own_data_{tag}"), **common)
    async with running(tasks) as tasks_client, running(data) as data_client:
        headers = auth_header(owner)
        assert (await tasks_client.post("/api/v1/tasks", json={"title": "x"}, headers=headers)).status_code == 201

        async def counted() -> bool:
            response = await data_client.get("/api/v1/stats/me", headers=headers)
            return response.status_code == 200 and response.json()["created"] == 1

        await eventually(counted)
        async with Redis.from_url(own_redis.url) as events, Redis.from_url(redis_server.url) as cache:
            assert await events.exists(stream, confirmed_key(stream)) == 2
            assert await cache.exists(stream, confirmed_key(stream)) == 0
