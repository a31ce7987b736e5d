"""The proxy path: every request under a catalog prefix, served as plain ASGI.

This is where a client's request goes: size check, token check, rate limits, then
``Forwarder`` sends it to its service and the answer is relayed as it came. It runs as
middleware inside the kit's request context (request id, access log, error boundary,
body deadline) and outside FastAPI's routing: the proxy has no parameters to validate
and no dependencies to solve, and FastAPI's per-request machinery (routing, exception
middleware, the instrumentator's second route match and Request/Response objects) was
about a fifth of the gateway's CPU. Every other path (health, metrics, the merged
docs) falls through to the FastAPI app.

It records the same ``http_requests_total``/``http_request_duration_seconds`` series
the instrumentator would, labelled with the upstream's own route template (the service
names it in ``X-Flotilla-Route``, which never reaches the client; bounded), or
``<prefix>{rest:path}`` when no upstream answered, and answers failures in the one
error shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.errors import MethodNotAllowed
from services.gateway.forward import UpstreamReply, UpstreamRequest
from services.gateway.headers import RawHeaders, client_response_headers, upstream_request_headers
from services.gateway.ratelimit import Check
from services.gateway.state import PUBLIC_ROUTES, Gateway
from services.gateway.upstreams import routes, under
from services.kit.app import Kit
from services.kit.errors import BadRequest, FlotillaError, PayloadTooLarge, Unauthorized, error_body
from services.kit.middleware import ROUTE_HEADER
from services.kit.security import bearer_token

log = structlog.get_logger("flotilla.gateway")

PROXIED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_NO_BODY_STATUSES = frozenset({204, 304})
#: Not a real status: what the access log and metrics record when the client left first.
CLIENT_CLOSED_REQUEST = 499
#: Distinct upstream route templates the gateway labels its metrics with; beyond that,
#: the prefix's template (a bound on series, whatever an upstream sends).
MAX_ROUTE_LABELS = 200


class ClientGone(Exception):
    """The client disconnected while its request body was being read."""


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    prefix: str
    upstream: str
    #: The ``handler`` label: the route template the router used to have.
    handler: str


def _header(headers: RawHeaders, name: bytes) -> bytes | None:
    # uvicorn hands header names over lower-cased.
    for key, value in headers:
        if key == name:
            return value
    return None


def refuse_declared_oversize(headers: RawHeaders, max_bytes: int) -> None:
    """413 from the Content-Length header alone, before anything is read."""
    declared = _header(headers, b"content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise BadRequest("invalid Content-Length") from None
    if length > max_bytes:
        raise PayloadTooLarge(max_bytes)


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``.

    A chunked body is counted while it arrives, so an endless stream costs at most
    ``max_bytes`` of memory.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _client_ip(scope: Scope) -> str:
    # uvicorn's proxy-headers support has already replaced the peer address with the
    # client's when the peer is a trusted proxy (settings.trusted_proxies; none by
    # default), so this is the address to limit, and an untrusted client cannot choose it.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _response_start(reply: UpstreamReply, method: str, upstream_origin: bytes) -> Message:
    # HEAD: the upstream's Content-Length describes the GET body, so it stays as sent.
    head = method == "HEAD"
    headers = client_response_headers(reply.headers, keep_content_length=head, upstream_origin=upstream_origin)
    if not head and reply.status_code >= 200 and reply.status_code not in _NO_BODY_STATUSES:
        headers.append((b"content-length", str(len(reply.body)).encode()))
    return {"type": "http.response.start", "status": reply.status_code, "headers": headers}


class ProxyRoutes:
    """ASGI middleware: requests under a catalog prefix are proxied, the rest pass on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = tuple(ProxyRoute(prefix, name, f"{prefix}{{rest:path}}") for prefix, name in routes())
        #: Upstream route templates used as labels so far (bounded by MAX_ROUTE_LABELS).
        self._labels: set[str] = set()

    def _handler(self, route: ProxyRoute, reply: UpstreamReply | None) -> str:
        """The ``handler`` label: the upstream's route template ("/api/v1/tasks/{task_id}",
        which the kit's middleware sends in X-Flotilla-Route), else the prefix's template.
        Only templates under the route's own prefix, and at most MAX_ROUTE_LABELS of them,
        so no upstream can grow the series without bound."""
        template = _header(reply.headers, ROUTE_HEADER) if reply is not None else None
        if template is None:
            return route.handler
        label = template.decode("latin-1")
        if label in self._labels:
            return label
        if under(label, (route.prefix,)) and len(self._labels) < MAX_ROUTE_LABELS:
            self._labels.add(label)
            return label
        return route.handler

    def _match(self, path: str) -> ProxyRoute | None:
        for route in self.routes:
            if path.startswith(route.prefix):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        kit: Kit = scope["app"].state.kit
        gateway = kit.runtime_as(Gateway)
        if not under(scope["path"], gateway.upstreams[route.upstream].prefixes):
            await self.app(scope, receive, send)  # "/api/v1/tasksfoo": the app's 404
            return
        started = time.perf_counter()
        status, reply = 500, None
        try:
            status, reply = await self._serve(route, gateway, kit, scope, receive, send)
        finally:
            kit.metrics.record_request(self._handler(route, reply), scope["method"], f"{str(status)[0]}xx",
                                       time.perf_counter() - started)

    async def _serve(self, route: ProxyRoute, gateway: Gateway, kit: Kit, scope: Scope, receive: Receive,
                     send: Send) -> tuple[int, UpstreamReply | None]:
        """Answer the request; its status, and the upstream's reply when there was one."""
        try:
            reply = await proxy(scope, receive, gateway, kit, route.upstream)
        except FlotillaError as exc:
            kit.metrics.errors.labels(error_code=exc.error_code).inc()
            headers = [(b"content-type", b"application/json")]
            headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
            await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
            await send({"type": "http.response.body",
                        "body": error_body(exc.error_code, exc.message, exc.details, scope["state"]["request_id"])})
            return exc.status_code, None
        except ClientGone:
            # Nothing failed here and no one is left to read an answer: neither an error
            # log nor a real 500 (the server drops what is sent to a closed connection).
            log.info("client_disconnected", method=scope["method"], path=scope["path"])
            await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return CLIENT_CLOSED_REQUEST, None
        await send(_response_start(reply, scope["method"], gateway.upstreams[route.upstream].origin))
        await send({"type": "http.response.body", "body": reply.body})
        return reply.status_code, reply


async def proxy(scope: Scope, receive: Receive, gateway: Gateway, kit: Kit, upstream_name: str) -> UpstreamReply:
    """Checks in order of cost (size, token, limits), then one exchange with the upstream."""
    method: str = scope["method"]
    if method not in PROXIED_METHODS:
        raise MethodNotAllowed(sorted(PROXIED_METHODS))
    upstream = gateway.upstreams[upstream_name]
    settings = gateway.settings
    headers: RawHeaders = scope["headers"]
    refuse_declared_oversize(headers, settings.max_body_bytes)  # before limits and auth: cheapest first
    client_ip = _client_ip(scope)
    by_address = Check("ip", client_ip, gateway.ip_limits)
    if (method, scope["path"]) in PUBLIC_ROUTES:
        await gateway.limiter.enforce(by_address)
    else:
        # Verified here so that anonymous or forged traffic never reaches a service, and
        # verified again by the service itself: identity travels as the signed token, which
        # a service trusts because it checks the signature, not because the gateway said so
        # (no X-User-Id header that anything inside the network could forge).
        authorization = _header(headers, b"authorization")
        try:
            token = bearer_token(authorization.decode("latin-1") if authorization is not None else None)
            principal = await kit.verifier.verify(token)
        except Unauthorized:
            await gateway.limiter.enforce(by_address)  # a flood of bad tokens is still limited
            raise
        # Both limits in one round trip; the address is counted first.
        await gateway.limiter.enforce(by_address, Check("user", principal.user_id, gateway.user_limits))
    body = await read_body(receive, settings.max_body_bytes)
    upstream_request = UpstreamRequest(
        method=method,
        url=upstream.url_for(scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")),
        headers=upstream_request_headers(headers, request_id=scope["state"]["request_id"],
                                         traceparent=scope["state"]["trace"].traceparent,
                                         client_ip=client_ip, scheme=scope["scheme"],
                                         forwarding_token=settings.forwarding_token.get_secret_value()),
        body=body or None,
    )
    return await gateway.forwarder.forward(upstream, upstream_request)
