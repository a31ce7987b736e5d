"""OpenAPI that tells the truth about errors.

FastAPI documents 422 as its own ``{"detail": [...]}`` body and nothing else; every
Flotilla error is the one error shape instead. This rewrites the schema once: 422
points at ``Error``, and a ``default`` response documents every other status
(401, 403, 404, 409, 413, 429, 503 ...) with the same shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERROR_REF = {"$ref": "#/components/schemas/Error"}


class Error(BaseModel):
    """The one error shape of every Flotilla service."""

    error_code: str
    message: str
    details: dict[str, Any] | None
    request_id: str


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = Error.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error_response("Validation error (details.errors lists each problem)")
            responses.setdefault("default", _error_response("Any other error, in the one error shape"))
    return schema


def install_error_documentation(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
