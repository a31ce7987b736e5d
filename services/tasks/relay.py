"""The outbox relay: publishes task events written by the routes, at least once.

Loop: claim a batch of unpublished outbox rows (oldest first), publish them, mark them
published, commit; in that order, so a crash between publish and commit publishes the
batch again (the consumer is idempotent by ``event_id``) and never loses it. On
PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``: several replicas share the work and
never publish the same row concurrently.

Target: the Redis Stream when Redis is configured; otherwise (embedded mode) the data
service's internal ingest over HTTP. While the target is down the rows stay in the
outbox and the relay backs off with jitter; delivery resumes on its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any, Protocol

import httpx
import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from sqlalchemy import delete, func, select, update

from services.kit import metric_names as names
from services.kit.app import Kit, Worker
from services.kit.cache import redis_client
from services.kit.db import Database, utcnow
from services.kit.events import INGEST_PATH, INTERNAL_TOKEN_HEADER, stream_fields
from services.kit.loops import ServiceLoop
from services.tasks.models import OutboxEvent
from services.tasks.settings import TasksSettings

log = structlog.get_logger("flotilla.tasks.relay")

#: The backlog gauges are refreshed at most this often (a COUNT over the backlog).
BACKLOG_REFRESH_SECONDS = 5.0
#: Published rows deleted per statement, so a large first prune never holds locks long.
PRUNE_BATCH = 5_000
#: On shutdown, time for a batch in flight to finish (bounded by Redis/HTTP timeouts).
STOP_GRACE_SECONDS = 10.0


class Publisher(Protocol):
    target: str

    async def publish(self, payloads: Sequence[Mapping[str, Any]]) -> None: ...

    async def close(self) -> None: ...


class StreamPublisher:
    """XADD each event to the Redis Stream (one round trip per batch)."""

    target = "stream"

    def __init__(self, client: Redis, *, stream: str, maxlen: int) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen

    async def publish(self, payloads: Sequence[Mapping[str, Any]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.xadd(self.stream, stream_fields(payload),  # type: ignore[arg-type]
                          maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()


class IngestPublisher:
    """POST the batch to the data service's internal ingest (embedded mode)."""

    target = "http"

    def __init__(self, http: httpx.AsyncClient, *, data_url: str, token: str) -> None:
        self.http = http
        self.url = data_url.rstrip("/") + INGEST_PATH
        self.token = token

    async def publish(self, payloads: Sequence[Mapping[str, Any]]) -> None:
        response = await self.http.post(self.url, json={"events": list(payloads)},
                                        headers={INTERNAL_TOKEN_HEADER: self.token})
        response.raise_for_status()

    async def close(self) -> None:
        return None  # the shared client belongs to the kit


class BacklogTooOld(Exception):
    """The "events" health check: events are not getting out."""


class OutboxRelay:
    def __init__(self, db: Database, publisher: Publisher, settings: TasksSettings, kit: Kit) -> None:
        self.db = db
        self.publisher = publisher
        self.batch_size = settings.relay_batch_size
        self.max_backlog_age = settings.relay_max_backlog_age_seconds
        self.retention = timedelta(seconds=settings.outbox_retention_seconds)
        self.prune_interval = settings.outbox_prune_interval_seconds
        self._pruned_at = 0.0
        registry = kit.metrics.registry
        self.published = Counter(names.OUTBOX_PUBLISHED_TOTAL.removesuffix("_total"),
                                 "Outbox rows published, by target (stream, http)", ["target"], registry=registry)
        self.backlog = Gauge(names.OUTBOX_BACKLOG, "Outbox rows not yet published", registry=registry)
        self.oldest_age = Gauge(names.OUTBOX_OLDEST_AGE_SECONDS,
                                "Age of the oldest unpublished outbox row (0 when none)", registry=registry)
        self.published.labels(target=publisher.target)  # exported as 0 before the first event
        self._backlog_refreshed_at = 0.0

    async def publish_batch(self) -> int:
        """Publish and mark one batch; the number of rows published."""
        async with self.db.session() as session, session.begin():
            query = (select(OutboxEvent)
                     .where(OutboxEvent.published_at.is_(None))
                     .order_by(OutboxEvent.created_at, OutboxEvent.id)
                     .limit(self.batch_size))
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = list(await session.scalars(query))
            if not rows:
                return 0
            await self.publisher.publish([row.payload for row in rows])
            await session.execute(update(OutboxEvent)
                                  .where(OutboxEvent.id.in_([row.id for row in rows]))
                                  .values(published_at=utcnow()))
        self.published.labels(target=self.publisher.target).inc(len(rows))
        return len(rows)

    async def step(self) -> bool:
        """One loop step: publish a batch; True when a full batch suggests more is waiting."""
        try:
            published = await self.publish_batch()
        finally:  # during an outage too: that is when the backlog gauges matter
            if time.monotonic() - self._backlog_refreshed_at > BACKLOG_REFRESH_SECONDS:
                with suppress(Exception):  # only gauges; the health check reports real trouble
                    await self.refresh_backlog()
        if time.monotonic() - self._pruned_at > self.prune_interval:
            self._pruned_at = time.monotonic()
            try:
                await self.prune()
            except Exception as exc:  # housekeeping: it never holds up publishing, and runs again later
                log.warning("outbox_prune_failed", error_type=type(exc).__name__)
        return published == self.batch_size

    async def prune(self) -> int:
        """Delete published rows older than the retention; the number deleted."""
        cutoff = utcnow() - self.retention
        total = 0
        while True:
            doomed = (select(OutboxEvent.id).where(OutboxEvent.published_at < cutoff)
                      .limit(PRUNE_BATCH).scalar_subquery())
            async with self.db.transaction() as conn:
                deleted = (await conn.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(doomed)))).rowcount
            total += deleted
            if deleted < PRUNE_BATCH:
                break
        if total:
            log.info("outbox_pruned", rows=total)
        return total

    async def refresh_backlog(self) -> tuple[int, float]:
        """(unpublished rows, age in seconds of the oldest) — also sets the gauges."""
        async with self.db.session() as session:
            count, oldest = (await session.execute(
                select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))
            )).one()
        age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
        self.backlog.set(count)
        self.oldest_age.set(age)
        self._backlog_refreshed_at = time.monotonic()
        return int(count), age

    async def check(self) -> None:
        _, age = await self.refresh_backlog()
        if age > self.max_backlog_age:
            raise BacklogTooOld(f"oldest unpublished event is {age:.0f}s old")


def outbox_relay(settings: TasksSettings) -> Worker:
    """The relay as a kit worker (``workers=[outbox_relay(settings)]``)."""

    @asynccontextmanager
    async def worker(kit: Kit) -> AsyncIterator[None]:
        redis_url = settings.redis_url.get_secret_value()
        publisher: Publisher
        if redis_url:
            publisher = StreamPublisher(redis_client(redis_url, timeout=settings.redis_timeout_seconds),
                                        stream=settings.events_stream, maxlen=settings.events_stream_maxlen)
        else:
            token = settings.internal_token.get_secret_value()
            if not token:
                # Rows stay in the outbox (nothing is lost) and the "events" health check
                # reports the growing backlog; this says why.
                log.warning("event_ingest_token_unset", reason="TASKS_INTERNAL_TOKEN is unset and there is no Redis",
                            effect="events wait in the outbox until a token (and the same on data) is set")
            publisher = IngestPublisher(kit.http, data_url=settings.data_url, token=token)
        relay = OutboxRelay(kit.database, publisher, settings, kit)
        kit.health.add("events", relay.check, critical=False)
        loop = ServiceLoop("outbox-relay", relay.step, idle_seconds=settings.relay_poll_seconds,
                           backoff_max_seconds=settings.relay_backoff_max_seconds)
        log.info("outbox_relay_started", target=publisher.target)
        try:
            async with loop.running(grace_seconds=STOP_GRACE_SECONDS):
                yield
        finally:
            await publisher.close()

    return worker
