"""Entry point of the gateway: ``create_app()`` is the uvicorn factory."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from services.gateway.openapi import TITLE
from services.gateway.routes import build_router
from services.gateway.settings import GatewaySettings
from services.gateway.state import gateway_worker
from services.kit.app import create_service_app
from services.kit.docs import install_docs

log = structlog.get_logger("flotilla.gateway")


async def _on_client_disconnect(request: Request, exc: Exception) -> Response:
    # The client went away while its body was being read: nothing failed here, and no
    # one is left to read an answer, so this is neither an error log nor a real 500.
    log.info("client_disconnected", method=request.method, path=request.url.path)
    return Response(status_code=499)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = create_service_app(
        settings,
        title="Flotilla gateway",
        description="The only public entry: token checks, rate limits, routing, merged OpenAPI.",
        routers=[build_router()],
        migrations=None,  # the gateway keeps no data
        workers=[gateway_worker(settings)],
        # The gateway serves the merged document of the whole API at /openapi.json and /docs.
        openapi_url=None,
    )
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)
    install_docs(app, openapi_url="/openapi.json", title=TITLE)  # the merged document
    return app
