"""Which headers cross the gateway, in each direction (RFC 9110 section 7.6.1).

Hop-by-hop headers describe one connection, so they never travel further, and neither
does any header the ``Connection`` header names. Everything else is end-to-end and
passes, except what the gateway itself is the authority for (framing, forwarding
headers, the request id, the W3C ``traceparent``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.kit.forwarding import CLIENT_HEADER, TOKEN_HEADER, forwarded_by_gateway
from services.kit.middleware import ROUTE_HEADER

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
#: Request headers the gateway sets itself. ``host`` comes from the upstream URL; the
#: framing (``content-length``) is recomputed from the body that is actually sent.
_SET_ON_REQUEST = frozenset({
    b"host", b"content-length", b"x-request-id", b"traceparent", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"forwarded", b"x-real-ip",
    CLIENT_HEADER.encode(), TOKEN_HEADER.encode(),  # what a client sends of these never passes
})
#: Response headers the gateway's own server writes (or, for the request id, its middleware).
_SET_ON_RESPONSE = frozenset({b"content-length", b"date", b"server", b"x-request-id", ROUTE_HEADER})
_DROP_ON_REQUEST = HOP_BY_HOP | _SET_ON_REQUEST
_DROP_ON_RESPONSE = HOP_BY_HOP | _SET_ON_RESPONSE
_DROP_ON_HEAD_RESPONSE = HOP_BY_HOP | (_SET_ON_RESPONSE - {b"content-length"})


def _named_by_connection(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return named


def _end_to_end(headers: Sequence[tuple[bytes, bytes]], also_drop: frozenset[bytes]) -> RawHeaders:
    # ``also_drop`` already holds HOP_BY_HOP (unions built once, not per request).
    named = _named_by_connection(headers)
    drop = also_drop | named if named else also_drop
    return [(key.lower(), value) for key, value in headers if key.lower() not in drop]


def upstream_request_headers(
    headers: Sequence[tuple[bytes, bytes]], *, request_id: str, client_ip: str, scheme: str, forwarding_token: str,
    traceparent: str | None = None,
) -> list[tuple[str, str]]:
    """As ``str`` pairs (latin-1, as on the wire), the form the upstream client takes."""
    incoming = {key.lower(): value for key, value in headers}
    out = [(key.decode("latin-1"), value.decode("latin-1"))
           for key, value in _end_to_end(headers, _DROP_ON_REQUEST)]
    # The client once, as resolved here (the peer, or what a trusted proxy said): a
    # client-sent chain is dropped, never passed on. Services believe the address only
    # with the forwarding token (services.kit.forwarding); X-Forwarded-For is for logs.
    out.append(("x-forwarded-for", client_ip))
    out.extend(forwarded_by_gateway(client_ip, forwarding_token))
    out.append(("x-forwarded-proto", scheme))
    if b"host" in incoming:
        out.append(("x-forwarded-host", incoming[b"host"].decode("latin-1")))
    out.append(("x-request-id", request_id))
    if traceparent is not None:  # the caller's trace (or a new one), the gateway as the parent
        out.append(("traceparent", traceparent))
    # The upstream client would otherwise offer gzip on the client's behalf; the body is
    # relayed byte for byte, so only what the client itself accepts may be asked for.
    if b"accept-encoding" not in incoming:
        out.append(("accept-encoding", "identity"))
    return out


def client_response_headers(headers: Sequence[tuple[bytes, bytes]], *, keep_content_length: bool,
                            upstream_origin: bytes) -> RawHeaders:
    """What the client gets; a ``Location`` on the upstream's own origin becomes a path,
    so no internal address ever reaches a client."""
    out = _end_to_end(headers, _DROP_ON_HEAD_RESPONSE if keep_content_length else _DROP_ON_RESPONSE)
    return [(key, value.removeprefix(upstream_origin) or b"/")
            if key in _LOCATIONS and value.startswith(upstream_origin) else (key, value)
            for key, value in out]


_LOCATIONS = frozenset({b"location", b"content-location"})
