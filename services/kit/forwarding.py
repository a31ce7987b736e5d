"""The client's address, as the gateway resolved it, for the services behind it.

The gateway knows who the client is (the TCP peer, or what a trusted proxy in front of
it says: ``ServiceSettings.trusted_proxies``). A service behind it only sees the
gateway. So the gateway sends the address in ``X-Flotilla-Client`` together with the
shared ``forwarding_token``, and a service believes the address only when the token
matches: anything else that can reach the service (another pod, a client on the same
host) cannot choose the address it is limited by. The gateway drops both headers from
what a client sends. Used for what is limited per address (auth's login budgets).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

CLIENT_HEADER = "x-flotilla-client"
TOKEN_HEADER = "x-flotilla-forwarding-token"  # noqa: S105 - a header name, not a secret


def forwarded_by_gateway(client_ip: str, token: str) -> list[tuple[str, str]]:
    """The headers the gateway adds to every upstream request (none without a token)."""
    return [(CLIENT_HEADER, client_ip), (TOKEN_HEADER, token)] if token else []


def client_address(request: Request, token: str) -> str:
    """The address the gateway vouches for, or else the TCP peer's."""
    peer = request.client.host if request.client else "unknown"
    claimed = request.headers.get(CLIENT_HEADER)
    proof = request.headers.get(TOKEN_HEADER)
    if token and claimed and proof and hmac.compare_digest(proof.encode(), token.encode()):
        return claimed
    return peer
