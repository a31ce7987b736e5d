"""The outbox relay: publishes task events written by the routes, at least once.

Loop: claim a batch of unpublished outbox rows (oldest first), publish them, mark them
published, commit; in that order, so a crash between publish and commit publishes the
batch again (the consumer is idempotent by ``event_id``) and never loses it. On
PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``: several replicas share the work and
never publish the same row concurrently.

Target: the Redis Stream when Redis is configured; otherwise (embedded mode) the data
service's internal ingest over HTTP. While the target is down the rows stay in the
outbox and the relay backs off with jitter; delivery resumes on its own.

End to end (kit.events): just before a row's first publication the relay gives it the
next sequence number, in a transaction of its own on the counter row (committed before
publishing, so a number is never handed out twice nor skipped). A published row stays
until the consumer confirms its number (the stream's ``confirmed`` key, or the ingest's
answer); one still unconfirmed ``events_replay_after_seconds`` after its publication is
published again, and every unconfirmed one at once when the stream's ``epoch`` key
shows that Redis lost its data. Pruning deletes only confirmed rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from sqlalchemy import ColumnElement, case, delete, func, or_, select, update

from services.kit import metric_names as names
from services.kit.app import Kit, Worker
from services.kit.cache import redis_client
from services.kit.db import Database, utcnow
from services.kit.events import (
    INGEST_PATH,
    INTERNAL_TOKEN_HEADER,
    TASK_EVENTS_PRODUCER,
    confirmed_key,
    epoch_key,
    head_key,
    stream_fields,
)
from services.kit.loops import ServiceLoop
from services.tasks.models import OutboxEvent, OutboxSequence
from services.tasks.settings import TasksSettings

log = structlog.get_logger("flotilla.tasks.relay")

#: The backlog gauges are refreshed at most this often (a COUNT over the backlog).
BACKLOG_REFRESH_SECONDS = 5.0
#: Published rows deleted per statement, so a large first prune never holds locks long.
PRUNE_BATCH = 5_000
#: On shutdown, time for a batch in flight to finish (bounded by Redis/HTTP timeouts).
STOP_GRACE_SECONDS = 10.0
#: Timeout replays that bring no progress (the consumer's confirmed sequence did not move
#: since the previous one: its database is down, say, and the entries wait in the stream
#: anyway) back off, from the replay timeout doubling up to this many times it.
REPLAY_BACKOFF_MAX_FACTOR = 8


@dataclass(frozen=True)
class Confirmation:
    """What the consumer's side says: its confirmed sequence (None: not known now) and
    whether the transport lost what it held since the last look."""

    confirmed: int | None
    reset: bool = False


class Publisher(Protocol):
    target: str

    async def publish(self, payloads: Sequence[Mapping[str, Any]]) -> int | None:
        """Publish; the consumer's confirmed sequence when the answer carries it."""
        ...

    async def confirmation(self) -> Confirmation: ...

    async def close(self) -> None: ...


class StreamPublisher:
    """XADD each event to the Redis Stream (one round trip per batch)."""

    target = "stream"

    def __init__(self, client: Redis, *, stream: str, maxlen: int) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self.confirmed_key = confirmed_key(stream)
        self.head_key = head_key(stream)
        self.epoch_key = epoch_key(stream)
        #: The Redis dataset's epoch as last seen (None before the first look).
        self.epoch: str | None = None

    async def publish(self, payloads: Sequence[Mapping[str, Any]]) -> int | None:
        async with self.client.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.xadd(self.stream, stream_fields(payload),  # type: ignore[arg-type]
                          maxlen=self.maxlen, approximate=True)
            # For the consumer's lag; in the same round trip. Replicas may set it out of
            # order for a moment; the consumer keeps the highest value it has seen.
            head = max((int(p["seq"]) for p in payloads if p.get("seq") is not None), default=None)
            if head is not None:
                pipe.set(self.head_key, head)
            await pipe.execute()
        return None

    async def confirmation(self) -> Confirmation:
        raw = await self.client.mget(self.confirmed_key, self.epoch_key)
        confirmed, epoch = (value.decode() if isinstance(value, bytes) else value for value in raw)
        reset = False
        if epoch is None or epoch != self.epoch:
            # Missing: Redis lost its data (or this is its first use). Another value than
            # the one seen before: it lost its data and another relay noticed first.
            reset = self.epoch is not None
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(self.epoch_key, uuid.uuid4().hex, nx=True)
                pipe.get(self.epoch_key)
                _, current = await pipe.execute()
            self.epoch = current.decode() if isinstance(current, bytes) else current
        return Confirmation(int(confirmed) if confirmed is not None else None, reset)

    async def close(self) -> None:
        await self.client.aclose()


class IngestPublisher:
    """POST the batch to the data service's internal ingest (embedded mode)."""

    target = "http"

    def __init__(self, http: httpx.AsyncClient, *, data_url: str, token: str) -> None:
        self.http = http
        self.url = data_url.rstrip("/") + INGEST_PATH
        self.token = token

    async def publish(self, payloads: Sequence[Mapping[str, Any]]) -> int | None:
        response = await self.http.post(self.url, json={"events": list(payloads)},
                                        headers={INTERNAL_TOKEN_HEADER: self.token})
        response.raise_for_status()
        # data applied the batch before answering: its answer is the confirmation.
        confirmed = response.json().get("confirmed_seq")
        return int(confirmed) if confirmed is not None else None

    async def confirmation(self) -> Confirmation:
        return Confirmation(None)  # every answer to a publish carries it

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
        self.replay_after = timedelta(seconds=settings.events_replay_after_seconds)
        self.confirm_interval = settings.events_confirm_interval_seconds
        self._pruned_at = 0.0
        self._confirm_checked_at = 0.0
        #: The consumer's confirmed sequence: the highest value seen, never lowered (a
        #: key lost with Redis's data, or a replica behind, must not un-confirm). None
        #: until seen: before that, nothing is replayed and nothing numbered is pruned.
        self.confirmed: int | None = None
        #: Rows published before this instant are replayed without waiting (Redis lost them).
        self._replay_before: datetime | None = None
        #: Timeout replays: not before this (monotonic) instant; the current back-off; the
        #: confirmed sequence at the last one (progress since then = the replay helped).
        self._timeout_replay_at = 0.0
        self._timeout_backoff = 0.0
        self._confirmed_at_replay: int | None = None
        #: Numbered rows may wait unpublished (a failed publish, a full batch, a replica
        #: that died between numbering and publishing): look for them, not only for new rows.
        self._numbered_waiting = True
        self._numbered_looked_at = 0.0
        registry = kit.metrics.registry
        self.published = Counter(names.OUTBOX_PUBLISHED_TOTAL.removesuffix("_total"),
                                 "Outbox rows published, by target (stream, http)", ["target"], registry=registry)
        self.backlog = Gauge(names.OUTBOX_BACKLOG, "Outbox rows not yet published", registry=registry)
        self.oldest_age = Gauge(names.OUTBOX_OLDEST_AGE_SECONDS,
                                "Age of the oldest unpublished outbox row (0 when none)", registry=registry)
        self.unconfirmed = Gauge(names.EVENTS_UNCONFIRMED, "Outbox rows the consumer has not confirmed",
                                 registry=registry)
        self.oldest_unconfirmed_age = Gauge(names.EVENTS_OLDEST_UNCONFIRMED_AGE_SECONDS,
                                            "Age of the oldest unconfirmed outbox row (0 when none)",
                                            registry=registry)
        self.replayed = Counter(names.EVENTS_REPLAYED_TOTAL.removesuffix("_total"),
                                "Outbox rows published again, by reason (timeout, reset)", ["reason"],
                                registry=registry)
        self.published.labels(target=publisher.target)  # exported as 0 before the first event
        for reason in ("timeout", "reset"):
            self.replayed.labels(reason=reason)
        self._backlog_refreshed_at = 0.0

    def note_confirmed(self, confirmed: int | None) -> None:
        if confirmed is not None and (self.confirmed is None or confirmed > self.confirmed):
            self.confirmed = confirmed

    async def number_batch(self) -> int:
        """Give the next sequence numbers to unnumbered, unpublished rows; how many.

        Committed before publishing: a number is then never handed out twice (the
        counter row is locked, so replicas take turns) nor left unused (a failed
        transaction returns it), and a row keeps its number through every replay.
        """
        async with self.db.session() as session, session.begin():
            query = (select(OutboxEvent.id)
                     .where(OutboxEvent.published_at.is_(None), OutboxEvent.seq.is_(None))
                     .order_by(OutboxEvent.created_at, OutboxEvent.id)
                     .limit(self.batch_size))
            counter = select(OutboxSequence.last_seq).where(OutboxSequence.producer == TASK_EVENTS_PRODUCER)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
                counter = counter.with_for_update()
            ids = list(await session.scalars(query))
            if not ids:
                return 0
            last = await session.scalar(counter)
            if last is None:  # a schema made without the migration's row; a race fails one replica once
                last = int(await session.scalar(select(func.coalesce(func.max(OutboxEvent.seq), 0))) or 0)
                session.add(OutboxSequence(producer=TASK_EVENTS_PRODUCER, last_seq=last))
                await session.flush()
            await session.execute(update(OutboxEvent),
                                  [{"id": row_id, "seq": last + offset} for offset, row_id in enumerate(ids, 1)])
            await session.execute(update(OutboxSequence).where(OutboxSequence.producer == TASK_EVENTS_PRODUCER)
                                  .values(last_seq=last + len(ids)))
        return len(ids)

    def _payload(self, row: OutboxEvent) -> dict[str, Any]:
        return {**row.payload, "seq": row.seq} if row.seq is not None else dict(row.payload)

    async def _publish_where(self, *conditions: ColumnElement[bool]) -> list[OutboxEvent]:
        """Publish (or publish again) the first numbered rows matching ``conditions`` and
        mark them published now, in one transaction; the rows."""
        async with self.db.session() as session, session.begin():
            query = select(OutboxEvent).where(*conditions).order_by(OutboxEvent.seq).limit(self.batch_size)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = list(await session.scalars(query))
            if rows:
                self.note_confirmed(await self.publisher.publish([self._payload(row) for row in rows]))
                await session.execute(update(OutboxEvent)
                                      .where(OutboxEvent.id.in_([row.id for row in rows]))
                                      .values(published_at=utcnow()))
        return rows

    async def publish_batch(self) -> int:
        """Number, publish and mark one batch; the number of rows published."""
        numbered = await self.number_batch()
        # An idle relay polls with one query (number_batch's); the publish query runs when
        # there is something to publish, and at least once per confirmation interval for
        # rows numbered by a replica that died before publishing them.
        if not numbered and not self._numbered_waiting \
                and time.monotonic() - self._numbered_looked_at < self.confirm_interval:
            return 0
        self._numbered_waiting = True  # until a publish query comes back short
        self._numbered_looked_at = time.monotonic()
        rows = await self._publish_where(OutboxEvent.published_at.is_(None), OutboxEvent.seq.isnot(None))
        if not rows:
            self._numbered_waiting = False
            return 0
        self._numbered_waiting = len(rows) == self.batch_size
        self.published.labels(target=self.publisher.target).inc(len(rows))
        return len(rows)

    async def check_confirmation(self) -> None:
        """Read the consumer's confirmed sequence, and notice a Redis that lost its data."""
        confirmation = await self.publisher.confirmation()
        self.note_confirmed(confirmation.confirmed)
        if confirmation.reset:
            self._replay_before = utcnow()
            log.warning("event_stream_reset", effect="unconfirmed events are published again",
                        confirmed=self.confirmed)

    async def replay_batch(self) -> int:
        """Publish again one batch of unconfirmed rows: every one published before Redis
        lost its data, else (when due) the first ones unconfirmed past the timeout; the
        number of rows published.

        A timeout replay takes the rows right after the confirmed sequence, the ones
        holding it back. When the confirmed sequence moved since the previous timeout
        replay, the next comes at the next look (a lost range goes back batch by batch
        as fast as the consumer confirms it); when it did not, the replay helped nothing
        (the consumer is down and its entries wait in the stream) and the next waits
        the timeout, doubling up to REPLAY_BACKOFF_MAX_FACTOR times it.
        """
        if self.confirmed is None:
            return 0
        if self._replay_before is not None:
            reason, cutoff = "reset", self._replay_before
        elif time.monotonic() >= self._timeout_replay_at:
            reason, cutoff = "timeout", utcnow() - self.replay_after
        else:
            return 0
        rows = await self._publish_where(OutboxEvent.seq > self.confirmed, OutboxEvent.published_at < cutoff)
        if not rows:
            if reason == "reset":
                self._replay_before = None
            return 0
        if reason == "timeout":
            timeout = self.replay_after.total_seconds()
            if self.confirmed != self._confirmed_at_replay:
                self._timeout_backoff = 0.0
            else:
                self._timeout_backoff = min(max(timeout, 2 * self._timeout_backoff),
                                            REPLAY_BACKOFF_MAX_FACTOR * timeout)
            self._confirmed_at_replay = self.confirmed
            self._timeout_replay_at = time.monotonic() + self._timeout_backoff
        self.replayed.labels(reason=reason).inc(len(rows))
        log.info("events_replayed", count=len(rows), first_seq=rows[0].seq, last_seq=rows[-1].seq, reason=reason,
                 confirmed=self.confirmed)
        return len(rows)

    async def step(self) -> bool:
        """One loop step: publish a batch (and replay one when due); True when a full
        batch suggests more is waiting."""
        replayed = 0
        try:
            published = await self.publish_batch()
            if time.monotonic() - self._confirm_checked_at > self.confirm_interval or self._replay_before is not None:
                self._confirm_checked_at = time.monotonic()
                await self.check_confirmation()
                replayed = await self.replay_batch()
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
        return published == self.batch_size or replayed == self.batch_size

    async def prune(self) -> int:
        """Delete confirmed rows published longer than the retention ago; the number deleted.

        Rows without a number (published before numbering existed) go by age alone.
        """
        cutoff = utcnow() - self.retention
        confirmed = OutboxEvent.seq.is_(None) if self.confirmed is None else \
            or_(OutboxEvent.seq.is_(None), OutboxEvent.seq <= self.confirmed)
        total = 0
        while True:
            doomed = (select(OutboxEvent.id).where(OutboxEvent.published_at < cutoff, confirmed)
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
        """(unpublished rows, age in seconds of the oldest) — also sets the gauges, and
        those of the unconfirmed rows."""
        unpublished = OutboxEvent.published_at.is_(None)
        unconfirmed = unpublished if self.confirmed is None else \
            or_(unpublished, OutboxEvent.seq > self.confirmed)
        async with self.db.session() as session:
            count, oldest, unconfirmed_count, oldest_unconfirmed = (await session.execute(
                select(func.count(case((unpublished, 1))), func.min(case((unpublished, OutboxEvent.created_at))),
                       func.count(), func.min(OutboxEvent.created_at))
                .where(unconfirmed)
            )).one()
        now = utcnow()
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        self.backlog.set(count)
        self.oldest_age.set(age)
        self.unconfirmed.set(unconfirmed_count)
        self.oldest_unconfirmed_age.set(
            max(0.0, (now - oldest_unconfirmed).total_seconds()) if oldest_unconfirmed is not None else 0.0)
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
        redis_url = settings.stream_redis_url
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
