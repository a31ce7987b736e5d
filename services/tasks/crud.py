"""Task persistence. Every write adds its outbox event in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import utcnow
from services.kit.errors import NotFound
from services.tasks.cursor import decode_cursor, encode_cursor
from services.tasks.models import OutboxEvent, Priority, Status, Task
from services.tasks.schemas import TaskCreate, TaskUpdate


def _event(event_type: str, task: Task) -> OutboxEvent:
    event_id = uuid.uuid4()
    payload: dict[str, Any] = {
        "event_id": str(event_id),
        "type": event_type,
        "task_id": str(task.id),
        "owner_id": task.owner_id,
        "priority": task.priority.value,
        "status": task.status.value,
        "title": task.title,
        "occurred_at": utcnow().isoformat(),
    }
    return OutboxEvent(id=event_id, event_type=event_type, task_id=task.id, owner_id=task.owner_id, payload=payload)


async def create_task(*, session: AsyncSession, owner_id: str, task_in: TaskCreate) -> Task:
    now = utcnow()
    task = Task(id=uuid.uuid4(), owner_id=owner_id, title=task_in.title, description=task_in.description,
                priority=task_in.priority, status=Status.todo, created_at=now, updated_at=now)
    session.add(task)
    session.add(_event("task.created", task))
    await session.commit()
    return task


async def get_task(*, session: AsyncSession, owner_id: str, task_id: uuid.UUID) -> Task:
    # Someone else's task is "not found", not "forbidden": ids of others stay unconfirmed.
    task = await session.scalar(select(Task).where(Task.id == task_id, Task.owner_id == owner_id))
    if task is None:
        raise NotFound("task not found", details={"task_id": str(task_id)})
    return task


async def list_tasks(
    *,
    session: AsyncSession,
    owner_id: str,
    status: Status | None,
    priority: Priority | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Task], str | None]:
    query = select(Task).where(Task.owner_id == owner_id)
    if status is not None:
        query = query.where(Task.status == status)
    if priority is not None:
        query = query.where(Task.priority == priority)
    if cursor:
        created_at, task_id = decode_cursor(cursor)
        query = query.where(tuple_(Task.created_at, Task.id) < tuple_(created_at, task_id))
    rows = list(await session.scalars(query.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
    return page, next_cursor


async def update_task(*, session: AsyncSession, task: Task, task_in: TaskUpdate) -> Task:
    changes = task_in.model_dump(exclude_unset=True)
    if changes.get("title", "") is None:
        changes.pop("title")  # title is required; an explicit null means "leave it"
    for field, value in changes.items():
        setattr(task, field, value)
    task.updated_at = utcnow()
    session.add(_event("task.updated", task))
    await session.commit()
    return task


async def delete_task(*, session: AsyncSession, task: Task) -> None:
    session.add(_event("task.deleted", task))
    await session.delete(task)
    await session.commit()
