"""Applying task events to the snapshot table, idempotently by event id.

The caller owns the transaction: the event ids and the snapshot changes commit
together, so an event is either fully applied and remembered, or neither. A
redelivered event finds its id already there and changes nothing.

The producer's sequence numbers (``kit.events``) are remembered with the ids, and the
same transaction advances the producer's confirmed sequence over them, so what is
confirmed is exactly what is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import BigInteger, and_, case, delete, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.data.models import EventWatermark, ProcessedEvent, TaskSnapshot
from services.data.titles import title_key
from services.kit.db import utcnow
from services.kit.events import TASK_EVENTS_PRODUCER, TaskEvent

log = structlog.get_logger("flotilla.data.events")


def log_committed(events: Sequence[TaskEvent], via: str) -> None:
    """One line per committed event (applied or a redelivery), with the request id and
    trace id of the request that caused it: a grep of either follows a task creation from
    the gateway's access log, through tasks', into data's."""
    for event in events:
        log.info("task_event_committed", via=via, event_id=str(event.event_id), type=event.type,
                 task_id=str(event.task_id), seq=event.seq, request_id=event.request_id,
                 trace_id=event.trace_id)


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    owners: set[str] = field(default_factory=set)
    #: The producer's confirmed sequence after this batch (None: no numbered events).
    confirmed_seq: int | None = None
    #: The highest sequence number in the batch (None: no numbered events).
    highest_seq: int | None = None

    @property
    def gap(self) -> bool:
        """Events beyond the confirmed sequence are committed: one before them is missing."""
        return self.highest_seq is not None and self.confirmed_seq is not None \
            and self.highest_seq > self.confirmed_seq


def _insert(session: AsyncSession, table: type[Any]) -> Any:
    # ON CONFLICT exists in both dialects with the same SQLAlchemy API, but each
    # dialect has its own insert construct.
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def _remember(session: AsyncSession, events: Sequence[TaskEvent]) -> set[str]:
    """Record the events' ids in one statement; the ids that were new (not redeliveries)."""
    now = utcnow()
    statement = (_insert(session, ProcessedEvent)
                 .values([{"event_id": event.event_id, "processed_at": now, "seq": event.seq} for event in events])
                 .on_conflict_do_nothing(index_elements=["event_id"])
                 .returning(ProcessedEvent.event_id))
    return {str(event_id) for event_id in (await session.scalars(statement))}


async def _upsert_snapshots(session: AsyncSession, events: Sequence[TaskEvent]) -> None:
    """One upsert for events of distinct tasks (a row cannot be upserted twice in one statement)."""
    statement = _insert(session, TaskSnapshot).values([
        {"task_id": event.task_id, "owner_id": event.owner_id, "title": event.title,
         "title_key": title_key(event.title), "priority": event.priority,
         "status": event.status, "deleted": event.type == "task.deleted",
         "first_seen_at": event.occurred_at, "version_at": event.occurred_at}
        for event in events
    ])
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["task_id"],
        set_={"title": excluded.title, "title_key": excluded.title_key, "priority": excluded.priority,
              "status": excluded.status, "deleted": excluded.deleted, "version_at": excluded.version_at},
        # Events of one task can arrive out of order (relay replicas, redeliveries):
        # only a newer event changes the row, and nothing revives a deleted task.
        where=and_(TaskSnapshot.deleted.is_(False), TaskSnapshot.version_at <= excluded.version_at),
    )
    await session.execute(statement)


def _rounds(events: Sequence[TaskEvent]) -> list[list[TaskEvent]]:
    """Split events into rounds with at most one event per task, keeping each task's order.

    Applying the rounds one after the other is applying the events one by one: a task's
    second event lands in the next round, after its first.
    """
    rounds: list[list[TaskEvent]] = []
    seen: dict[str, int] = {}
    for event in events:
        index = seen.get(str(event.task_id), -1) + 1
        seen[str(event.task_id)] = index
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(event)
    return rounds


async def apply_events(session: AsyncSession, events: Sequence[TaskEvent]) -> ApplyResult:
    """Apply ``events`` in the caller's transaction: a few statements per batch, not two per event."""
    result = ApplyResult()
    if not events:
        return result
    new_ids = await _remember(session, events)
    fresh: list[TaskEvent] = []
    for event in events:
        if str(event.event_id) in new_ids:
            new_ids.discard(str(event.event_id))  # the same id twice in one batch counts once
            fresh.append(event)
        else:
            result.duplicates += 1
    for round_ in _rounds(fresh):
        await _upsert_snapshots(session, round_)
    result.applied = len(fresh)
    result.owners = {event.owner_id for event in fresh}
    numbered = [event.seq for event in events if event.seq is not None]
    if numbered:
        result.highest_seq = max(numbered)
        result.confirmed_seq = await advance_confirmed(session, TASK_EVENTS_PRODUCER)
    return result


def _end_of_run_after(confirmed: Any) -> Any:
    """The last sequence of the unbroken run that starts right after ``confirmed``
    (``confirmed`` itself when the next one is missing).

    The run ends at the first recorded ``seq`` whose successor is not recorded: every
    number between ``confirmed + 1`` and that one is there. An index range scan from
    ``confirmed`` that stops at the first hole, so its cost is the run's length.
    """
    successor = ProcessedEvent.__table__.alias("successor")
    end = (select(ProcessedEvent.seq)
           .where(ProcessedEvent.seq > confirmed,
                  ~exists().where(successor.c.seq == ProcessedEvent.seq + 1))
           .order_by(ProcessedEvent.seq).limit(1).scalar_subquery())
    next_there = exists().where(ProcessedEvent.seq == confirmed + 1)
    return select(case((next_there, end), else_=confirmed))


async def advance_confirmed(session: AsyncSession, producer: str) -> int:
    """Move ``producer``'s confirmed sequence over the numbers now recorded; the new value.

    The watermark row is locked first, so consumers committing at the same time take
    turns here, and each one's scan (a statement after the lock, with a fresh snapshot
    under READ COMMITTED) sees the numbers the previous one committed.
    """
    locked = select(EventWatermark.confirmed_seq).where(EventWatermark.producer == producer)
    if session.get_bind().dialect.name == "postgresql":
        locked = locked.with_for_update()
    current = await session.scalar(locked)
    if current is None:  # a producer without a row yet (the migration adds "tasks")
        await session.execute(_insert(session, EventWatermark).values(producer=producer, confirmed_seq=0)
                              .on_conflict_do_nothing(index_elements=["producer"]))
        current = int(await session.scalar(locked) or 0)
    advanced = int(await session.scalar(_end_of_run_after(literal(current, BigInteger))) or current)
    if advanced != current:
        await session.execute(update(EventWatermark).where(EventWatermark.producer == producer)
                              .values(confirmed_seq=advanced))
    return advanced


async def confirmed_sequence(session: AsyncSession, producer: str) -> int:
    """The confirmed sequence of ``producer`` (0 when nothing is)."""
    value = await session.scalar(select(EventWatermark.confirmed_seq).where(EventWatermark.producer == producer))
    return int(value or 0)


async def forget_processed_before(session: AsyncSession, *, days: int) -> int:
    """Drop de-duplication ids older than ``days``; the number dropped.

    Numbered ids beyond the lowest confirmed sequence stay: the confirmed sequence
    still has to advance over them once the gap before them is filled.
    """
    cutoff = utcnow() - timedelta(days=days)
    confirmed = select(func.coalesce(func.min(EventWatermark.confirmed_seq), 0)).scalar_subquery()
    outcome = await session.execute(delete(ProcessedEvent).where(
        ProcessedEvent.processed_at < cutoff,
        or_(ProcessedEvent.seq.is_(None), ProcessedEvent.seq <= confirmed)))
    return int(getattr(outcome, "rowcount", 0) or 0)


def parse_events(items: Sequence[dict[str, Any]]) -> tuple[list[TaskEvent], int]:
    """Valid events of ``items`` and how many were not (skipped, never retried)."""
    events: list[TaskEvent] = []
    invalid = 0
    for item in items:
        try:
            events.append(TaskEvent.model_validate(item))
        except ValidationError:
            invalid += 1
    return events, invalid
