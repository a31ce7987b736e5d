"""Request context as one pure-ASGI middleware: request id and W3C trace context
(services.kit.tracing), access log, error boundary.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, streaming
bodies untouched, and it can turn *any* exception into the error shape before the
server's own 500 handler (which would print a stack trace) ever sees it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit import tracing
from services.kit.errors import PayloadTooLarge, RequestBodyTimeout, classify_unexpected
from services.kit.tracing import TRACEPARENT_HEADER

log = structlog.get_logger("flotilla.access")

REQUEST_ID_HEADER = b"x-request-id"
#: The route template that served a request ("/api/v1/tasks/{task_id}"): the gateway
#: labels its metrics with it (bounded: a service's templates) and never passes it on.
ROUTE_HEADER = b"x-flotilla-route"
CONTENT_LENGTH_HEADER = b"content-length"
#: On every response: browsers must not sniff a JSON body into something executable,
#: and a JSON answer has no business loading anything or being framed.
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)
JSON_SECURITY_HEADERS = ((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),)
_SET_HERE = frozenset({REQUEST_ID_HEADER, ROUTE_HEADER, *(k for k, _ in SECURITY_HEADERS),
                       *(k for k, _ in JSON_SECURITY_HEADERS)})
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})


def _scan_headers(scope: Scope) -> tuple[str, bytes | None, int]:
    """The request id (the caller's when valid, else a new one), the caller's
    ``traceparent`` (unchecked) and the declared body length (0 when none: the server has
    already refused a malformed Content-Length)."""
    request_id = ""
    traceparent = None
    declared = 0
    for key, value in scope.get("headers", ()):
        if key == REQUEST_ID_HEADER:
            if not request_id and _VALID_REQUEST_ID.match(value):
                request_id = value.decode("ascii")
        elif key == CONTENT_LENGTH_HEADER and value.isdigit():
            declared = int(value)
        elif key == TRACEPARENT_HEADER and traceparent is None:
            traceparent = value
    return request_id or uuid.uuid4().hex, traceparent, declared


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, retry_after_seconds: int = 5, body_timeout_seconds: float = 30.0,
                 max_body_bytes: int = 1024 * 1024) -> None:
        self.app = app
        self.retry_after_seconds = retry_after_seconds
        self.body_timeout_seconds = body_timeout_seconds
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, traceparent, declared_length = _scan_headers(scope)
        trace = tracing.new_trace(request_id, traceparent)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["trace"] = trace
        trace_token = tracing.current.set(trace)
        started = time.perf_counter()
        status = 500
        response_started = False
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace.trace_id)
        path = scope.get("path", "")
        metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
        inprogress = None
        if metrics is not None and path not in _QUIET_PATHS:
            inprogress = metrics.inprogress.labels(method=scope.get("method", ""))
            inprogress.inc()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() not in _SET_HERE]
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                route = getattr(scope.get("route"), "path", None)  # set by routing, when a route matched
                if route is not None:
                    headers.append((ROUTE_HEADER, route.encode()))
                headers.extend(SECURITY_HEADERS)
                if any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers):
                    headers.extend(JSON_SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        body_complete = False
        body_bytes = 0
        max_body_bytes = self.max_body_bytes

        async def receive_with_deadline() -> Message:
            # uvicorn waits for a request body forever; a client that stalls (slowloris)
            # would hold a connection and a task. Each chunk must arrive within the
            # timeout; once the body is complete, receive (disconnect) is left alone.
            # A body (chunked, or lying about its length) is cut off past max_body_bytes.
            nonlocal body_complete, body_bytes
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout_seconds):
                    message = await receive()
            except TimeoutError:
                raise RequestBodyTimeout() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            if message["type"] == "http.request":
                body_bytes += len(message.get("body", b""))
                if body_bytes > max_body_bytes:
                    body_complete = True
                    raise PayloadTooLarge(max_body_bytes)
            return message

        try:
            if declared_length > max_body_bytes:
                raise PayloadTooLarge(max_body_bytes)  # refused before a byte of it is read
            await self.app(scope, receive_with_deadline, send_with_request_id)
        except Exception as exc:
            status, body, headers = classify_unexpected(exc, request_id, self.retry_after_seconds)
            if metrics is not None:
                metrics.errors.labels(error_code=orjson.loads(body)["error_code"]).inc()
            if response_started:
                # Headers are gone already; all we can do is log and let the server close it.
                log.error("response_aborted", error_type=type(exc).__name__)
                raise
            await send_with_request_id(_start(status, headers))
            await send({"type": "http.response.body", "body": body})
        finally:
            if inprogress is not None:
                inprogress.dec()
            if path not in _QUIET_PATHS or status >= 500:
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
            tracing.current.reset(trace_token)


def _start(status: int, headers: dict[str, str]) -> Message:
    raw: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return {"type": "http.response.start", "status": status, "headers": raw}


def json_bytes(payload: Any) -> bytes:
    return orjson.dumps(payload)
