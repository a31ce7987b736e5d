"""The one error shape, and the handlers that put every failure into it.

``{"error_code": str, "message": str, "details": dict | None, "request_id": str}``.
Known failures get their own status (404, 409, 401/403, 422, 503 + Retry-After);
anything else is a 500 whose body says nothing about internals.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("flotilla.errors")


class FlotillaError(Exception):
    """Base of every error a handler turns into the error shape."""

    status_code: int = 500
    error_code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details) if details is not None else None
        self.headers = dict(headers or {})


class NotFound(FlotillaError):
    status_code = 404
    error_code = "not_found"


class Conflict(FlotillaError):
    status_code = 409
    error_code = "conflict"


class Unauthorized(FlotillaError):
    status_code = 401
    error_code = "unauthorized"

    def __init__(self, message: str = "missing or invalid bearer token", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="flotilla"'})
        super().__init__(message, **kwargs)


class Forbidden(FlotillaError):
    status_code = 403
    error_code = "forbidden"


class BadRequest(FlotillaError):
    status_code = 400
    error_code = "bad_request"


class TooManyRequests(FlotillaError):
    status_code = 429
    error_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(max(1, retry_after))})
        super().__init__(message, **kwargs)


class DependencyUnavailable(FlotillaError):
    """A dependency (database, Redis, an upstream service) is down: 503 + Retry-After."""

    status_code = 503
    error_code = "dependency_unavailable"

    def __init__(self, dependency: str, *, retry_after: int = 5, message: str | None = None,
                 shed: bool = True) -> None:
        # shed=False where this process does not itself depend on what is down (the
        # gateway relaying that an upstream is unreachable or its circuit open).
        headers = {"Retry-After": str(max(1, retry_after))}
        if shed:
            headers[SHED_HEADER] = "dependency"
        super().__init__(
            message or f"{dependency} is temporarily unavailable; retry later",
            details={"dependency": dependency},
            headers=headers,
        )
        self.dependency = dependency


#: Marks a 503 that a live service chose to send: it is at capacity ("overloaded") or
#: one of its own dependencies is down ("dependency"). The gateway passes it on without
#: counting it against the service's breaker: the service is up, answers fast, and may
#: still serve other requests (cached reads while its database is down), and a breaker
#: opened on these would keep refusing for its whole recovery window after the cause
#: is gone.
SHED_HEADER = "X-Flotilla-Shed"


class Overloaded(FlotillaError):
    """This process is at capacity: refused fast (503 + Retry-After) instead of queued.

    Not an outage: the service is alive and serving what it can; a breaker that opened
    on these answers would refuse the work it could still do.
    """

    status_code = 503
    error_code = "overloaded"

    def __init__(self, resource: str, *, retry_after: int = 1) -> None:
        super().__init__(
            f"{resource} is at capacity; retry later",
            details={"resource": resource},
            headers={"Retry-After": str(max(1, retry_after)), SHED_HEADER: "overloaded"},
        )


class PayloadTooLarge(FlotillaError):
    """The request body is larger than the service accepts (``max_body_bytes``)."""

    status_code = 413
    error_code = "payload_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body exceeds {max_bytes} bytes", details={"max_bytes": max_bytes})


class RequestHeadTooLarge(FlotillaError):
    """The request line and headers exceed a size or count limit (answered by the server protocol)."""

    status_code = 431
    error_code = "request_header_fields_too_large"

    def __init__(self, limit: str, value: int) -> None:
        what = "bytes" if limit == "max_header_bytes" else "header fields"
        super().__init__(f"the request head exceeds {value} {what}", details={limit: value})


class RequestHeadTimeout(FlotillaError):
    """The client did not finish sending its request head in time (answered by the server protocol)."""

    status_code = 408
    error_code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__("the request head did not arrive in time", details={"timeout_seconds": seconds})


class RequestBodyTimeout(Exception):
    """The client stopped sending its request body (slowloris, a stalled upload).

    Deliberately not a TimeoutError: that would read as a dependency outage (503).
    """


BODY_TIMEOUT_MESSAGE = "the request body did not arrive in time"
BODY_TIMEOUT_HEADERS = {"Connection": "close"}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_body(error_code: str, message: str, details: Mapping[str, Any] | None, request_id: str) -> bytes:
    """The one error shape, serialised."""
    return orjson.dumps({
        "error_code": error_code,
        "message": message,
        "details": dict(details) if details is not None else None,
        "request_id": request_id,
    })


def error_response(
    request: Request,
    status_code: int,
    error_code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(error_code=error_code).inc()
    return Response(error_body(error_code, message, details, request_id_of(request)), status_code=status_code,
                    headers=dict(headers or {}), media_type="application/json")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``.orig``) and what caused it."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def _is_database_outage(exc: BaseException) -> bool:
    # SQLAlchemy is looked up, not imported: a service without a database never loads it,
    # and then none of its exceptions can be in the chain.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    for item in _chain(exc):
        if sa_exc is not None:
            if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
                return True
            if isinstance(item, sa_exc.TimeoutError | sa_exc.InterfaceError | sa_exc.OperationalError):
                return True
        if isinstance(item, ConnectionError | asyncio.TimeoutError | TimeoutError):
            return True
        if isinstance(item, OSError) and item.errno is not None:
            return True
        name = type(item).__name__
        # asyncpg's connection-level errors, without importing asyncpg in SQLite-only setups.
        if name in {"PostgresConnectionError", "CannotConnectNowError", "ConnectionDoesNotExistError",
                    "TooManyConnectionsError", "AdminShutdownError", "QueryCanceledError"}:
            return True
    return False


def _validation_details(exc: RequestValidationError) -> dict[str, Any]:
    # Drop the offending input: it may be a password. Location + reason is enough to fix it.
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return {"errors": errors}


def install_error_handlers(app: FastAPI, *, database: bool) -> None:
    """The error shape for every failure; ``database``: also for SQLAlchemy's (a unique
    key violated is a 409), which a service without one never loads."""
    async def on_flotilla_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FlotillaError)
        return error_response(request, exc.status_code, exc.error_code, exc.message, exc.details, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 422, "validation_error", "request validation failed",
                              _validation_details(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, FlotillaError):
            # Raised while FastAPI read the body (PayloadTooLarge): it wraps that into a 400.
            return await on_flotilla_error(request, exc.__cause__)
        if isinstance(exc.__cause__, RequestBodyTimeout):
            # FastAPI wraps any failure while reading the body into a 400; say what it was.
            return error_response(request, 408, "request_timeout", BODY_TIMEOUT_MESSAGE, None, BODY_TIMEOUT_HEADERS)
        try:
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "error"
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        message = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else phrase.lower()
        return error_response(request, exc.status_code, code, message, None, exc.headers)

    async def on_integrity_error(request: Request, exc: Exception) -> Response:
        log.info("integrity_conflict", error_type=type(exc).__name__)
        return error_response(request, 409, "conflict", "the request conflicts with existing data")

    app.add_exception_handler(FlotillaError, on_flotilla_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    if database:
        from sqlalchemy.exc import IntegrityError

        app.add_exception_handler(IntegrityError, on_integrity_error)


def classify_unexpected(
    exc: BaseException, request_id: str, retry_after_seconds: int
) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers for an exception no handler claimed.

    A database outage surfaces from deep inside SQLAlchemy/asyncpg as many exception
    types; all of them mean "retry later", so they become 503 + Retry-After.
    """
    details: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    if isinstance(exc, FlotillaError):  # raised outside the routes (the body limit in the middleware)
        status, code, message, details, headers = (exc.status_code, exc.error_code, exc.message, exc.details,
                                                   dict(exc.headers))
    elif isinstance(exc, RequestBodyTimeout):
        status, code, message, headers = 408, "request_timeout", BODY_TIMEOUT_MESSAGE, dict(BODY_TIMEOUT_HEADERS)
    elif _is_database_outage(exc):
        log.warning("dependency_unavailable", dependency="database", error_type=type(exc).__name__)
        status, code, message = 503, "dependency_unavailable", "database is temporarily unavailable; retry later"
        details = {"dependency": "database"}
        headers = {"Retry-After": str(retry_after_seconds), SHED_HEADER: "dependency"}
    else:
        log.error("unhandled_exception", error_type=type(exc).__name__, exc_info=exc)
        status, code, message = 500, "internal_error", "an unexpected error occurred"
    return status, error_body(code, message, details, request_id), headers
