"""OpenAPI that tells the truth about errors.

FastAPI documents 422 as its own ``{"detail": [...]}`` body and nothing else; every
Flotilla error is the one error shape instead. This rewrites the schema once: each
operation lists every error status it can answer, each with the ``Error`` schema, and a
``default`` response covers the rest (a proxy's 502, a slow client's 408 ...).

Which statuses an operation can answer is derived from the route, so a new route is
documented without anyone remembering to: a route whose dependencies verify a bearer
token answers 401, a route that reads a stored resource by a UUID path id answers 404,
one with a body 413 and 422, and every route 503 (overloaded, draining or a dependency
down). What only the code knows (409 on a duplicate, 403, 429 from a login budget) the
endpoint or dependency declares with :func:`raises`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict

ERROR_REF = {"$ref": "#/components/schemas/Error"}

#: What each documented error status means, wherever it appears.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request",
    401: "Missing, malformed, expired or otherwise invalid credentials",
    403: "Authenticated, but not allowed to act on this resource",
    404: "No such resource among the caller's own",
    409: "Conflicts with what is stored",
    413: "Request body too large",
    422: "Validation error (details.errors lists each problem)",
    429: "Too many requests; retry after the Retry-After header's seconds",
    503: "Overloaded, shutting down, or a dependency is unavailable; retry after Retry-After seconds",
}

_MARK = "__flotilla_errors__"
F = TypeVar("F", bound=Callable[..., Any])


class Error(BaseModel):
    """The one error shape of every Flotilla service."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "error_code": "not_found", "message": "task not found", "details": None,
        "request_id": "4f6c2a1e9b8d4c3a",
    }]})

    error_code: str
    message: str
    details: dict[str, Any] | None
    request_id: str


def raises(*statuses: int) -> Callable[[F], F]:
    """Declare error statuses an endpoint or dependency answers beyond the derived ones.

    On a dependency, every route that depends on it (directly or not) inherits them.
    """
    unknown = set(statuses) - set(ERROR_DESCRIPTIONS)
    if unknown:
        raise ValueError(f"no description for error status {sorted(unknown)}; add it to ERROR_DESCRIPTIONS")

    def mark(func: F) -> F:
        setattr(func, _MARK, frozenset(statuses) | getattr(func, _MARK, frozenset()))
        return func

    return mark


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def route_errors(route: APIRoute | RouteContext) -> set[int]:
    """Every error status ``route`` (or an included router's view of it) can answer."""
    statuses = {503}
    for dependant in _dependants(route.dependant):
        statuses |= getattr(dependant.call, _MARK, frozenset())
    path_params = [param for dependant in _dependants(route.dependant) for param in dependant.path_params]
    if any(param.field_info.annotation is uuid.UUID for param in path_params):
        statuses.add(404)
    if route.body_field is not None:
        statuses |= {413, 422}
    if path_params or any(dependant.query_params or dependant.header_params
                          for dependant in _dependants(route.dependant)):
        statuses.add(422)
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": ERROR_REF}}}


def document_errors(schema: dict[str, Any], errors: dict[tuple[str, str], set[int]] | None = None) -> dict[str, Any]:
    """Point every error response at ``Error``; ``errors``: (method, path) -> its statuses."""
    errors = errors or {}
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = Error.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            statuses = errors.get((method, path), set())
            if "422" in responses:
                statuses = statuses | {422}
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
            responses.setdefault("default", {"description": "Any other error, in the one error shape",
                                             "content": {"application/json": {"schema": ERROR_REF}}})
    return schema


def _errors_by_operation(app: FastAPI) -> dict[tuple[str, str], set[int]]:
    # Route contexts, as FastAPI's own get_openapi walks them: included routers' routes
    # seen with their prefix and the dependencies the include added.
    errors: dict[tuple[str, str], set[int]] = {}
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            for method in context.methods or ():
                errors[(method.lower(), str(context.path_format))] = route_errors(context)
    return errors


def install_error_documentation(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes),
                _errors_by_operation(app),
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
