"""Entry point of the gateway: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from services.gateway.openapi import TITLE
from services.gateway.proxy import ProxyRoutes
from services.gateway.routes import build_router
from services.gateway.settings import GatewaySettings
from services.gateway.state import gateway_worker
from services.kit.app import create_service_app
from services.kit.docs import install_docs


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = create_service_app(
        settings,
        title="Flotilla gateway",
        description="The only public entry: token checks, rate limits, routing, merged OpenAPI.",
        routers=[build_router()],
        middleware=[Middleware(ProxyRoutes)],
        migrations=None,  # the gateway keeps no data
        workers=[gateway_worker(settings)],
        # The gateway serves the merged document of the whole API at /openapi.json and /docs.
        openapi_url=None,
    )
    install_docs(app, openapi_url="/openapi.json", title=TITLE)  # the merged document
    return app
