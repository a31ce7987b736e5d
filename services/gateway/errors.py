"""Gateway-only failures, in the kit's one error shape (the kit's handlers render them)."""

from __future__ import annotations

from services.kit.errors import DependencyUnavailable, FlotillaError


class UpstreamTimeout(DependencyUnavailable):
    """The upstream accepted the request but did not answer in time: 504 + Retry-After."""

    status_code = 504
    error_code = "upstream_timeout"


class BadGateway(DependencyUnavailable):
    """The upstream broke the exchange (closed the connection mid-response): 502 + Retry-After."""

    status_code = 502
    error_code = "bad_gateway"


class MethodNotAllowed(FlotillaError):
    status_code = 405
    error_code = "method_not_allowed"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__("method not allowed", headers={"Allow": ", ".join(allowed)})
