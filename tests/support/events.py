"""Helpers for the task-event suites: app builders tuned for fast delivery, outbox checks
for ``eventually`` (tests/support/polling.py), and outbox inspection. A real HTTP server
for an in-process app is ``serve_app`` (tests/support/live.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from services.data.app import create_app as create_data_app
from services.data.settings import DataSettings
from services.kit.events import EVENT_STREAM_PREFIX
from services.tasks.app import create_app as create_tasks_app
from services.tasks.models import OutboxEvent
from services.tasks.settings import TasksSettings
from tests.services.conftest import service_env


def unique_stream() -> str:
    """A stream of its own per test, so tests sharing one Redis never see each other."""
    return f"{EVENT_STREAM_PREFIX}test-{uuid.uuid4().hex[:12]}"


#: The internal ingest token the test apps share (there is no built-in one).
INTERNAL_TOKEN = "test-only-internal-token"

def tasks_app(*, database_url: str, redis_url: str = "", data_dir: Path, **extra: Any) -> FastAPI:
    values = {"relay_poll_seconds": 0.05, "relay_backoff_max_seconds": 0.5, "internal_token": INTERNAL_TOKEN,
              **extra}
    return create_tasks_app(TasksSettings(**service_env("TASKS_", database_url=database_url, redis_url=redis_url,
                                                        data_dir=data_dir, **values)))


def data_app(*, database_url: str, redis_url: str = "", data_dir: Path, **extra: Any) -> FastAPI:
    values = {"consumer_block_ms": 100, "consumer_backoff_max_seconds": 0.5, "popular_refresh_seconds": 0.05,
              "internal_token": INTERNAL_TOKEN, **extra}
    return create_data_app(DataSettings(**service_env("DATA_", database_url=database_url, redis_url=redis_url,
                                                      data_dir=data_dir, **values)))


def outbox_settles(app: FastAPI, published: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: all ``published`` outbox rows of ``app`` are published, none waits."""
    async def check() -> bool:
        return await outbox_state(app) == {"published": published, "unpublished": 0}
    return check


async def outbox_state(app: FastAPI) -> dict[str, int]:
    """Counts of published and unpublished outbox rows of a running tasks app."""
    async with app.state.kit.database.session() as session:
        rows = await session.execute(
            select(OutboxEvent.published_at.is_(None), func.count()).group_by(OutboxEvent.published_at.is_(None))
        )
        counts = {"published": 0, "unpublished": 0}
        for unpublished, count in rows:
            counts["unpublished" if unpublished else "published"] += count
        return counts


async def outbox_event_ids(app: FastAPI) -> list[str]:
    """Event ids of every outbox row, oldest first (the order the relay publishes)."""
    async with app.state.kit.database.session() as session:
        ids = await session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.created_at, OutboxEvent.id))
        return [str(i) for i in ids]


def event(owner_id: str, *, type: str = "task.created", task_id: uuid.UUID | None = None,
          title: str = "Write tests", priority: str = "medium", status: str = "todo",
          occurred_at: datetime | None = None, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    """A task event as the tasks service writes it (JSON-ready)."""
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "type": type,
        "task_id": str(task_id or uuid.uuid4()),
        "owner_id": owner_id,
        "priority": priority,
        "status": status,
        "title": title,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
    }
