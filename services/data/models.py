"""Tables of the data service: the last known state of every task, and the event ids
already applied (de-duplication)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.data.titles import TITLE_KEY_LENGTH
from services.kit.db import UTCDateTime


class DataBase(DeclarativeBase):
    pass


class TaskSnapshot(DataBase):
    """A task as the events describe it. Stats and recommendations are computed from
    these rows, so an update or a delete changes the numbers exactly, and an event
    that arrives late (older than ``version_at``) changes nothing."""

    __tablename__ = "task_snapshots"

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    #: ``titles.title_key(title)``: popular titles are counted per key, not per exact text.
    title_key: Mapped[str] = mapped_column(String(TITLE_KEY_LENGTH))
    # Plain strings: the values are validated by the event contract (kit.events).
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When the first event of this task was seen (its creation, normally).
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: ``occurred_at`` of the event the row reflects.
    version_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_task_snapshots_owner", "owner_id", "deleted", "status"),
    )


class ProcessedEvent(DataBase):
    __tablename__ = "processed_events"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: The producer's sequence number of the event (``kit.events``), when it has one:
    #: what the confirmed sequence advances over.
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)


class EventWatermark(DataBase):
    """Per producer, the highest sequence N such that every event 1..N is committed
    here; advanced in the transaction that applies the events."""

    __tablename__ = "event_watermarks"

    producer: Mapped[str] = mapped_column(String(64), primary_key=True)
    confirmed_seq: Mapped[int] = mapped_column(BigInteger)
