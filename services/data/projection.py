"""Applying task events to the snapshot table, idempotently by event id.

The caller owns the transaction: the event ids and the snapshot changes commit
together, so an event is either fully applied and remembered, or neither. A
redelivered event finds its id already there and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.data.models import ProcessedEvent, TaskSnapshot
from services.kit.db import utcnow
from services.kit.events import TaskEvent


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    owners: set[str] = field(default_factory=set)


def _insert(session: AsyncSession, table: type[Any]) -> Any:
    # ON CONFLICT exists in both dialects with the same SQLAlchemy API, but each
    # dialect has its own insert construct.
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def _remember(session: AsyncSession, event: TaskEvent) -> bool:
    """Record the event id; False when it was already there (a redelivery)."""
    statement = (_insert(session, ProcessedEvent)
                 .values(event_id=event.event_id, processed_at=utcnow())
                 .on_conflict_do_nothing(index_elements=["event_id"])
                 .returning(ProcessedEvent.event_id))
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def _upsert_snapshot(session: AsyncSession, event: TaskEvent) -> None:
    statement = _insert(session, TaskSnapshot).values(
        task_id=event.task_id, owner_id=event.owner_id, title=event.title, priority=event.priority,
        status=event.status, deleted=event.type == "task.deleted",
        first_seen_at=event.occurred_at, version_at=event.occurred_at,
    )
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["task_id"],
        set_={"title": excluded.title, "priority": excluded.priority, "status": excluded.status,
              "deleted": excluded.deleted, "version_at": excluded.version_at},
        # Events of one task can arrive out of order (relay replicas, redeliveries):
        # only a newer event changes the row, and nothing revives a deleted task.
        where=and_(TaskSnapshot.deleted.is_(False), TaskSnapshot.version_at <= excluded.version_at),
    )
    await session.execute(statement)


async def apply_events(session: AsyncSession, events: Iterable[TaskEvent]) -> ApplyResult:
    """Apply ``events`` in the caller's transaction."""
    result = ApplyResult()
    for event in events:
        if not await _remember(session, event):
            result.duplicates += 1
            continue
        await _upsert_snapshot(session, event)
        result.applied += 1
        result.owners.add(event.owner_id)
    return result


async def forget_processed_before(session: AsyncSession, *, days: int) -> int:
    """Drop de-duplication ids older than ``days``; the number dropped."""
    cutoff = utcnow() - timedelta(days=days)
    outcome = await session.execute(delete(ProcessedEvent).where(ProcessedEvent.processed_at < cutoff))
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
