"""Two ports per service process: the API, and the operator's port (metrics, full health).

The API port is what the gateway, an Ingress or a client reaches: it serves the API and
the two cheap probes Kubernetes calls (``/health/live``, ``/health/ready``). ``/metrics``
(per-route failure counts, breaker states) and the full ``/health`` report (which calls
every dependency on each request) are answered only on the metrics port, which the chart
names ``metrics`` for the ServiceMonitor and which no Ingress routes. The metrics port
serves nothing else.

One server with two listening sockets, told apart by the port each request came in on,
rather than two servers: one lifespan, one set of signal handlers, one drain.
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Receive, Scope, Send

from services.kit.catalog import METRICS_PORT_OFFSET
from services.kit.errors import error_body
from services.kit.middleware import JSON_SECURITY_HEADERS, SECURITY_HEADERS

#: Served on the metrics port only.
OPERATOR_ONLY_PATHS = frozenset({"/metrics", "/health"})
#: What the metrics port serves: the above, and the probes (so one port can check all).
METRICS_PORT_PATHS = OPERATOR_ONLY_PATHS | {"/health/live", "/health/ready"}


def default_metrics_port(port: int) -> int:
    """``port + catalog.METRICS_PORT_OFFSET`` unless configured: 8000 -> 9000, 8003 -> 9003."""
    return port + METRICS_PORT_OFFSET


class SplitPorts:
    """ASGI wrapper: each path answers on its own port only, anything else is a 404."""

    def __init__(self, app: ASGIApp, *, metrics_port: int) -> None:
        self.app = app
        self.metrics_port = metrics_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_metrics_port = server is not None and server[1] == self.metrics_port
            path = scope["path"]
            if path not in METRICS_PORT_PATHS if on_metrics_port else path in OPERATOR_ONLY_PATHS:
                await _not_found(send)
                return
        await self.app(scope, receive, send)


async def _not_found(send: Send) -> None:
    # Before the app's own middleware, so the error shape is written here (as the app's
    # 404 would be, with its own request id).
    request_id = uuid.uuid4().hex
    await send({"type": "http.response.start", "status": 404, "headers": [
        (b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
        *SECURITY_HEADERS, *JSON_SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": error_body("not_found", "not found", None, request_id)})
