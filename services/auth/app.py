"""Entry point of the auth service: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.auth.routes import jwks_router, router
from services.auth.runtime import start_auth_runtime
from services.auth.settings import AuthSettings
from services.kit.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or AuthSettings(),
        title="Flotilla auth",
        description="Accounts, login, short-lived access JWTs, rotating refresh tokens, and the JWKS that "
                    "verifies them.",
        routers=[router, jwks_router],
        migrations=MIGRATIONS,
        workers=[start_auth_runtime],
    )
