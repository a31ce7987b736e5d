"""Tables of the tasks service: tasks, and the outbox of task events."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, Index, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.db import UTCDateTime, utcnow


class TasksBase(DeclarativeBase):
    pass


class Priority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class Status(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


def _str_enum(enum: type[StrEnum], name: str) -> Enum:
    # Stored as VARCHAR + CHECK, not a native PG enum: adding a value is then a plain
    # migration instead of ALTER TYPE, and SQLite gets the same constraint.
    return Enum(enum, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda e: [m.value for m in e])


class Task(TasksBase):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    priority: Mapped[Priority] = mapped_column(_str_enum(Priority, "task_priority"), default=Priority.medium)
    status: Mapped[Status] = mapped_column(_str_enum(Status, "task_status"), default=Status.todo)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # Serves the hot query: one owner's tasks, newest first, keyset-paginated.
        Index("ix_tasks_owner_created_id", "owner_id", created_at.desc(), id.desc()),
    )


class OutboxEvent(TasksBase):
    """A task event written in the same transaction as the change it describes."""

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    owner_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the relay (last) published the row: first publication, then each replay.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The producer's sequence number, given by the relay just before the first
    #: publication (so numbers follow publication order and have no holes).
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_outbox_seq", "seq", unique=True),
        Index("ix_outbox_unpublished", "created_at",
              postgresql_where=published_at.is_(None), sqlite_where=published_at.is_(None)),
        # Serves the retention prune (published rows older than a cutoff).
        Index("ix_outbox_published", "published_at",
              postgresql_where=published_at.isnot(None), sqlite_where=published_at.isnot(None)),
    )


class OutboxSequence(TasksBase):
    """The last sequence number handed out, per producer: never goes back, even when
    every numbered row has been pruned."""

    __tablename__ = "outbox_sequence"

    producer: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
