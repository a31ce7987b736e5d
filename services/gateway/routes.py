"""The gateway's HTTP surface: one proxy route per catalog prefix, the merged docs.

A route per prefix (not one catch-all) keeps metrics labelled by API area and makes
any other path a plain 404 in the error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from services.gateway.errors import PayloadTooLarge
from services.gateway.forward import UpstreamReply, UpstreamRequest
from services.gateway.headers import client_response_headers, upstream_request_headers
from services.gateway.ratelimit import Check
from services.gateway.state import PUBLIC_ROUTES, Gateway, GatewayDep, get_gateway
from services.gateway.upstreams import routes, under
from services.kit.deps import get_kit
from services.kit.errors import BadRequest, Unauthorized, request_id_of
from services.kit.security import bearer_token

PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_NO_BODY_STATUSES = frozenset({204, 304})


def refuse_declared_oversize(request: Request, max_bytes: int) -> None:
    """413 from the Content-Length header alone, before anything is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise BadRequest("invalid Content-Length") from None
    if length > max_bytes:
        raise PayloadTooLarge(max_bytes)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``.

    A chunked body is counted while it arrives, so an endless stream costs at most
    ``max_bytes`` of memory.
    """
    refuse_declared_oversize(request, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _to_response(reply: UpstreamReply, method: str, upstream_origin: bytes) -> Response:
    # HEAD: the upstream's Content-Length describes the GET body, so it stays as sent.
    head = method == "HEAD"
    headers = client_response_headers(reply.headers, keep_content_length=head, upstream_origin=upstream_origin)
    if not head and reply.status_code >= 200 and reply.status_code not in _NO_BODY_STATUSES:
        headers.append((b"content-length", str(len(reply.body)).encode()))
    response = Response(content=reply.body, status_code=reply.status_code)
    response.raw_headers = headers  # all of them, repeated ones (Set-Cookie) included, as relayed
    return response


def _client_ip(request: Request) -> str:
    # uvicorn's proxy-headers support has already replaced the peer address with the
    # client's when the peer is a trusted proxy (FORWARDED_ALLOW_IPS), so this is the
    # address to limit, and an untrusted client cannot choose it.
    return request.client.host if request.client else "unknown"


async def proxy(request: Request, upstream_name: str, gateway: Gateway) -> Response:
    upstream = gateway.upstreams[upstream_name]
    if not under(request.url.path, upstream.prefixes):
        raise HTTPException(status_code=404)  # "/api/v1/tasksfoo" matched "/api/v1/tasks{rest:path}"
    settings = gateway.settings
    refuse_declared_oversize(request, settings.max_body_bytes)  # before limits and auth: cheapest first
    client_ip = _client_ip(request)
    by_address = Check("ip", client_ip, gateway.ip_limits)
    if (request.method, request.url.path) in PUBLIC_ROUTES:
        await gateway.limiter.enforce(by_address)
    else:
        # Verified here so that anonymous or forged traffic never reaches a service, and
        # verified again by the service itself: identity travels as the signed token, which
        # a service trusts because it checks the signature, not because the gateway said so
        # (no X-User-Id header that anything inside the network could forge).
        try:
            principal = await get_kit(request).verifier.verify(bearer_token(request.headers.get("authorization")))
        except Unauthorized:
            await gateway.limiter.enforce(by_address)  # a flood of bad tokens is still limited
            raise
        # Both limits in one round trip; the address is counted first, as before.
        await gateway.limiter.enforce(by_address, Check("user", principal.user_id, gateway.user_limits))
    body = await read_body(request, settings.max_body_bytes)
    scope = request.scope
    upstream_request = UpstreamRequest(
        method=request.method,
        url=upstream.url_for(scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")),
        headers=upstream_request_headers(request.headers.raw, request_id=request_id_of(request),
                                         client_ip=client_ip, scheme=scope["scheme"]),
        body=body or None,
    )
    reply = await gateway.forwarder.forward(upstream, upstream_request)
    return _to_response(reply, request.method, upstream.origin)


def _proxy_endpoint(upstream_name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await proxy(request, upstream_name, get_gateway(request))

    endpoint.__name__ = f"proxy_{upstream_name}"
    return endpoint


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi(gateway: GatewayDep) -> JSONResponse:
        return JSONResponse(await gateway.openapi.document())


    for prefix, upstream_name in routes():
        # A plain Starlette route, not a FastAPI one: the proxy has no parameters to
        # validate and no dependencies to solve, and FastAPI's per-request machinery for
        # that (dependency solving, body handling, response wrapping) was about a seventh
        # of the gateway's CPU. Exception handlers and middleware apply as to any route.
        router.add_route(f"{prefix}{{rest:path}}", _proxy_endpoint(upstream_name), methods=PROXIED_METHODS,
                         include_in_schema=False, name=f"proxy:{upstream_name}:{prefix}")
    return router
