"""The Redis Streams consumer of task events (consumer group ``data``).

Per batch: read (XREADGROUP ... BLOCK), apply every event and remember its id in one
transaction, commit, then XACK. A crash before the commit leaves the entries pending;
they are claimed again (XAUTOCLAIM of entries idle longer than ``claim_idle_ms``) by
whichever consumer looks next, this one included, on start and periodically. A crash
between commit and XACK redelivers events that are then skipped as duplicates.

About once a second the consumer also writes its confirmed sequence to the stream's
``confirmed`` key and reads the producer's ``head`` (one round trip, whatever the
event rate): the relay keeps every event until it is confirmed, and publishes again
what stays unconfirmed, so entries that Redis lost are delivered again (kit.events).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.data.progress import EventProgress
from services.data.projection import ApplyResult, apply_events, confirmed_sequence, log_committed
from services.data.settings import DataSettings
from services.kit.db import Database
from services.kit.events import (
    DATA_GROUP,
    TASK_EVENTS_PRODUCER,
    TaskEvent,
    confirmed_key,
    from_stream_fields,
    head_key,
)

log = structlog.get_logger("flotilla.data.consumer")

Entry = tuple[str, dict[str, str] | None]
#: Called after each batch with what it did and how many entries were not events.
ResultHook = Callable[[ApplyResult, int], None]


class StreamConsumer:
    def __init__(self, *, redis: Redis, db: Database, settings: DataSettings, on_batch: ResultHook,
                 progress: EventProgress) -> None:
        self.redis = redis
        self.db = db
        self.stream = settings.events_stream
        self.group = DATA_GROUP
        self.name = settings.effective_consumer_name
        self.batch_size = settings.consumer_batch_size
        self.block_ms = settings.consumer_block_ms
        self.claim_idle_ms = settings.consumer_claim_idle_ms
        self.claim_interval = settings.consumer_claim_interval_seconds
        self.on_batch = on_batch
        self.progress = progress
        self.report_interval = settings.consumer_report_interval_seconds
        self._group_ready = False
        self._next_claim_at = 0.0
        self._next_report_at = 0.0

    async def step(self) -> bool:
        """One loop step (always ready for the next: the blocking read is the wait)."""
        try:
            if not self._group_ready:
                await self.ensure_group()
            if time.monotonic() >= self._next_claim_at:
                await self.reclaim()
                self._next_claim_at = time.monotonic() + self.claim_interval
            await self.read()
        except Exception:
            self._group_ready = False  # a restarted Redis has lost the group: create it again
            raise
        finally:
            if time.monotonic() >= self._next_report_at:
                self._next_report_at = time.monotonic() + self.report_interval
                try:
                    await self.report()
                except Exception as exc:  # the next report retries; consuming goes on meanwhile
                    log.warning("event_progress_report_failed", error_type=type(exc).__name__)
        return True

    async def report(self) -> None:
        """Write the confirmed sequence where the relay reads it; read the producer's head."""
        if self.progress.confirmed is None:
            async with self.db.session() as session:
                self.progress.known(confirmed=await confirmed_sequence(session, TASK_EVENTS_PRODUCER))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(confirmed_key(self.stream), self.progress.confirmed or 0)
            pipe.get(head_key(self.stream))
            _, head = await pipe.execute()
        self.progress.known(head=int(head) if head else None)

    async def ensure_group(self) -> None:
        try:
            # From the start of the stream, not "$": events published before the group
            # existed (or after Redis lost it) are still delivered; duplicates are skipped.
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def reclaim(self) -> int:
        """Take over entries another (dead) consumer read but never acknowledged."""
        start, claimed = "0-0", 0
        while True:
            response = await self.redis.xautoclaim(self.stream, self.group, self.name, self.claim_idle_ms,
                                                   start_id=start, count=self.batch_size)
            start, entries = response[0], response[1]
            if entries:
                claimed += len(entries)
                await self.handle(entries)
            if start in ("0-0", b"0-0"):
                break
        if claimed:
            log.info("pending_events_reclaimed", count=claimed)
        return claimed

    async def read(self) -> int:
        response: Any = await self.redis.xreadgroup(self.group, self.name, {self.stream: ">"},
                                                    count=self.batch_size, block=self.block_ms)
        # RESP2 answers [[stream, entries]], RESP3 {stream: entries}.
        pairs = response.items() if isinstance(response, dict) else (response or ())
        handled = 0
        for _stream, entries in pairs:
            await self.handle(entries)
            handled += len(entries)
        return handled

    async def handle(self, entries: Sequence[Entry]) -> None:
        events: list[TaskEvent] = []
        invalid = 0
        for entry_id, fields in entries:
            if fields is None:  # trimmed from the stream while pending: nothing to apply
                continue
            try:
                events.append(from_stream_fields(fields))
            except (KeyError, ValidationError):
                # A malformed entry would fail forever: acknowledge it and say so.
                invalid += 1
                log.error("invalid_task_event", entry_id=entry_id)
        result = ApplyResult()
        if events:
            self.progress.saw(event.seq for event in events)
            async with self.db.session() as session, session.begin():
                result = await apply_events(session, events)
            self.progress.committed(result)
            log_committed(events, "stream")
        await self.redis.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        self.on_batch(result, invalid)


def consumer_redis(url: str, settings: DataSettings) -> Redis:
    """A client whose socket timeout outlasts the blocking read."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=settings.consumer_block_ms / 1000 + settings.redis_timeout_seconds + 1,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
    )
