"""Entry point of the users service: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.kit.app import create_service_app
from services.users.routes import router
from services.users.settings import UsersSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or UsersSettings(),
        title="Flotilla users",
        description="The caller's own profile: read and change it; it is created on first use.",
        routers=[router],
        migrations=MIGRATIONS,
    )
