"""Entry point of the data service: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.data.routes import internal_router, recommendations_router, stats_router
from services.data.runtime import data_runtime
from services.data.settings import DataSettings
from services.kit.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: DataSettings | None = None) -> FastAPI:
    settings = settings or DataSettings()
    return create_service_app(
        settings,
        title="Flotilla data",
        description="Consumes task events; per-user task statistics and recommendations with graceful degradation.",
        routers=[stats_router, recommendations_router, internal_router],
        migrations=MIGRATIONS,
        workers=[data_runtime(settings)],
    )
