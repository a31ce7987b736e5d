"""Entry point of the tasks service: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.kit.app import create_service_app
from services.tasks.relay import outbox_relay
from services.tasks.routes import router
from services.tasks.settings import TasksSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: TasksSettings | None = None) -> FastAPI:
    settings = settings or TasksSettings()
    return create_service_app(
        settings,
        title="Flotilla tasks",
        description="Tasks of the caller: keyset-paginated listing, CRUD, task events via an outbox.",
        routers=[router],
        migrations=MIGRATIONS,
        workers=[outbox_relay(settings)],
    )
