"""Which headers cross the gateway, in each direction (RFC 9110 section 7.6.1).

Hop-by-hop headers describe one connection, so they never travel further, and neither
does any header the ``Connection`` header names. Everything else is end-to-end and
passes, except what the gateway itself is the authority for (framing, forwarding
headers, the request id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
#: Request headers the gateway sets itself. ``host`` comes from the upstream URL; the
#: framing (``content-length``) is recomputed from the body that is actually sent.
_SET_ON_REQUEST = frozenset({
    b"host", b"content-length", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"forwarded",
})
#: Response headers the gateway's own server writes (or, for the request id, its middleware).
_SET_ON_RESPONSE = frozenset({b"content-length", b"date", b"server", b"x-request-id"})


def _named_by_connection(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return named


def _end_to_end(headers: Sequence[tuple[bytes, bytes]], also_drop: frozenset[bytes]) -> RawHeaders:
    drop = HOP_BY_HOP | also_drop | _named_by_connection(headers)
    return [(key.lower(), value) for key, value in headers if key.lower() not in drop]


def upstream_request_headers(
    headers: Sequence[tuple[bytes, bytes]], *, request_id: str, client_ip: str, scheme: str
) -> RawHeaders:
    out = _end_to_end(headers, _SET_ON_REQUEST)
    incoming = {key.lower(): value for key, value in headers}
    # Append, never replace: the upstream's proxy-headers handling takes the right-most
    # untrusted address, which is the client as this gateway saw it, so a client cannot
    # spoof its address by sending its own X-Forwarded-For.
    chain = incoming.get(b"x-forwarded-for")
    client = client_ip.encode("latin-1")
    out.append((b"x-forwarded-for", chain + b", " + client if chain else client))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if b"host" in incoming:
        out.append((b"x-forwarded-host", incoming[b"host"]))
    out.append((b"x-request-id", request_id.encode("latin-1")))
    # The upstream client would otherwise offer gzip on the client's behalf; the body is
    # relayed byte for byte, so only what the client itself accepts may be asked for.
    if b"accept-encoding" not in incoming:
        out.append((b"accept-encoding", b"identity"))
    return out


def client_response_headers(headers: Sequence[tuple[bytes, bytes]], *, keep_content_length: bool) -> RawHeaders:
    drop = _SET_ON_RESPONSE - {b"content-length"} if keep_content_length else _SET_ON_RESPONSE
    return _end_to_end(headers, drop)
