"""The gateway's own FastAPI routes: the merged OpenAPI document.

Proxied paths never reach FastAPI's router: ``services.gateway.proxy`` serves them.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.gateway.state import GatewayDep


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi(gateway: GatewayDep) -> JSONResponse:
        return JSONResponse(await gateway.openapi.document())

    return router
