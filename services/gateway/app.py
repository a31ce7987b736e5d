"""Entry point of the gateway: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.gateway.routes import build_router
from services.gateway.settings import GatewaySettings
from services.gateway.state import gateway_worker
from services.kit.app import create_service_app


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    return create_service_app(
        settings,
        title="Flotilla gateway",
        description="The only public entry: token checks, rate limits, routing, merged OpenAPI.",
        routers=[build_router()],
        migrations=None,  # the gateway keeps no data
        workers=[gateway_worker(settings)],
        # The gateway serves the merged document of the whole API at /openapi.json and /docs.
        openapi_url=None,
    )
