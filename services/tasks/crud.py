"""Task persistence. Every write adds its outbox event in the same transaction.

The hot paths (create, list) use SQLAlchemy Core on a plain connection: no session,
identity map or unit-of-work flush for a single INSERT or SELECT. The rarer ones
(get, update, delete) use the ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, Select, Table, bindparam, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.kit import tracing
from services.kit.db import Database, utcnow
from services.kit.errors import NotFound
from services.tasks.cursor import decode_cursor
from services.tasks.models import OutboxEvent, Priority, Status, Task
from services.tasks.schemas import TaskCreate, TaskUpdate

TASKS: Table = Task.__table__  # type: ignore[assignment]  # a Table at runtime; typed FromClause
OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]


def _event_row(event_type: str, task: Mapping[str, Any]) -> dict[str, Any]:
    """The outbox row describing a change to ``task`` (a row of the tasks table)."""
    event_id = uuid.uuid4()
    trace = tracing.current.get()
    payload: dict[str, Any] = {
        "event_id": str(event_id),
        "type": event_type,
        "task_id": str(task["id"]),
        "owner_id": task["owner_id"],
        "priority": Priority(task["priority"]).value,
        "status": Status(task["status"]).value,
        "title": task["title"],
        "occurred_at": utcnow().isoformat(),
    }
    if trace is not None:  # the request's ids travel with the event into data's logs
        payload["request_id"] = trace.request_id
        payload["traceparent"] = trace.traceparent
    return {"id": event_id, "event_type": event_type, "task_id": task["id"], "owner_id": task["owner_id"],
            "payload": payload, "created_at": utcnow(), "published_at": None, "seq": None}


def _task_row(task: Task) -> dict[str, Any]:
    return {column.key: getattr(task, column.key) for column in TASKS.columns}


def _event(event_type: str, task: Task) -> OutboxEvent:
    return OutboxEvent(**_event_row(event_type, _task_row(task)))


def _create_with_event() -> Insert:
    """INSERT task + INSERT its outbox event as one PostgreSQL statement (a data-modifying CTE).

    Built once: constructing a Core statement per request (coercing every value) cost more
    CPU than executing it. Parameters are ``task_<column>`` and ``event_<column>``.
    """
    new_task = (insert(TASKS)
                .values({c.key: bindparam(f"task_{c.key}", type_=c.type) for c in TASKS.columns})
                .returning(TASKS.c.id)
                .cte("new_task"))
    event_columns = [c for c in OUTBOX.columns if c.key != "task_id"]
    rows = select(*(bindparam(f"event_{c.key}", type_=c.type).label(c.key) for c in event_columns),
                  new_task.c.id.label("task_id")).select_from(new_task)
    return insert(OUTBOX).from_select([*(c.key for c in event_columns), "task_id"], rows)


_CREATE_WITH_EVENT = _create_with_event()
_INSERT_TASK = insert(TASKS)
_INSERT_EVENT = insert(OUTBOX)


async def create_task(*, database: Database, owner_id: str, task_in: TaskCreate) -> dict[str, Any]:
    """Insert the task and its ``task.created`` event atomically; the task's row."""
    now = utcnow()
    task = {"id": uuid.uuid4(), "owner_id": owner_id, "title": task_in.title, "description": task_in.description,
            "priority": task_in.priority, "status": Status.todo, "created_at": now, "updated_at": now}
    event = _event_row("task.created", task)
    if database.is_sqlite:  # no data-modifying CTEs: two INSERTs in a transaction
        async with database.transaction() as conn:
            await conn.execute(_INSERT_TASK, [task])
            await conn.execute(_INSERT_EVENT, [event])
        return task
    # One statement is atomic on its own: one round trip instead of four (BEGIN, INSERT,
    # INSERT, COMMIT).
    params = {f"task_{key}": value for key, value in task.items()}
    params.update({f"event_{key}": value for key, value in event.items() if key != "task_id"})
    async with database.autocommit() as conn:
        await conn.execute(_CREATE_WITH_EVENT, params)
    return task


async def get_task(*, session: AsyncSession, owner_id: str, task_id: uuid.UUID) -> Task:
    # Someone else's task is "not found", not "forbidden": ids of others stay unconfirmed.
    task = await session.scalar(select(Task).where(Task.id == task_id, Task.owner_id == owner_id))
    if task is None:
        raise NotFound("task not found", details={"task_id": str(task_id)})
    return task


def _list_query(owner_id: str, status: Status | None, priority: Priority | None, cursor: str | None,
                limit: int) -> Select[Any]:
    query = select(TASKS).where(TASKS.c.owner_id == owner_id)
    if status is not None:
        query = query.where(TASKS.c.status == status)
    if priority is not None:
        query = query.where(TASKS.c.priority == priority)
    if cursor:
        created_at, task_id = decode_cursor(cursor)
        query = query.where(tuple_(TASKS.c.created_at, TASKS.c.id) < tuple_(created_at, task_id))
    # One row more than the page tells whether another page follows.
    return query.order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc()).limit(limit + 1)


async def list_tasks(
    *,
    conn: AsyncConnection,
    owner_id: str,
    status: Status | None,
    priority: Priority | None,
    cursor: str | None,
    limit: int,
) -> list[Mapping[str, Any]]:
    """Up to ``limit + 1`` rows of the owner's tasks, newest first, after ``cursor``."""
    result = await conn.execute(_list_query(owner_id, status, priority, cursor, limit))
    return list(result.mappings())


async def update_task(*, session: AsyncSession, task: Task, task_in: TaskUpdate) -> Task:
    changes = task_in.model_dump(exclude_unset=True)
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
