"""Serve an ASGI app on a real socket inside the test's event loop.

For tests where a service must be reached over the network (the gateway's upstreams,
end-to-end flows) and must be stoppable and restartable on the same port:

    async with serve_app(create_app(settings)) as base_url:
        ...                                   # http://127.0.0.1:<port>
    async with serve_app(other_app, port=port_of(base_url)) as base_url:
        ...                                   # the same address again

``Recorder`` wraps a real app to count what reaches it and to inject failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

STARTUP_TIMEOUT = 60.0


class _InProcessServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner owns SIGINT/SIGTERM; several servers swapping handlers in and
        # out (not in LIFO order) would leave the wrong one installed.
        yield


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Restarting on the port of a server that just stopped must not hit TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def port_of(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None, base_url
    return port


@asynccontextmanager
async def serve_app(app: ASGIApp, *, port: int = 0, host: str = "127.0.0.1",
                    http: type[asyncio.Protocol] | str = "auto") -> AsyncIterator[str]:
    """Run ``app`` (lifespan included) under uvicorn; yield its base URL; stop it on exit.

    The socket is bound here (port 0 = any free port), so there is no race between
    picking a port and listening on it. ``http``: the protocol, as ``uvicorn.Config`` takes
    it (the limited one of services/kit/http_limits.py, as `flotilla serve` runs).
    """
    sock = _bound_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False,
                            timeout_graceful_shutdown=5, server_header=False, http=http)
    server = _InProcessServer(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits the process when start-up fails
            raise RuntimeError(f"server on port {bound_port} failed to start (exit {exc.code})") from None

    task = asyncio.create_task(run(), name=f"uvicorn:{bound_port}")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if task.done():
                task.result()  # raises why it stopped
                raise RuntimeError(f"server on port {bound_port} stopped during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {bound_port} not started after {STARTUP_TIMEOUT}s")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


class Recorder:
    """ASGI wrapper around a real app: records every HTTP request that reaches it, and
    can answer the next few itself with a failure (fault injection without mocks).

        tasks = Recorder(create_app(settings))
        async with serve_app(tasks) as url: ...
        tasks.fail_next(1, status=503)
        assert tasks.count("GET") == 2
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[SeenRequest] = []
        self._failures: deque[tuple[int, tuple[tuple[bytes, bytes], ...]]] = deque()
        self._holds = 0
        self._released = asyncio.Event()

    def fail_next(self, count: int, *, status: int = 503, headers: dict[str, str] | None = None) -> None:
        extra = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items())
        self._failures.extend([(status, extra)] * count)

    def break_next(self, count: int) -> None:
        """Answer the next ``count`` API requests with a truncated response and a closed connection."""
        self._failures.extend([(0, ())] * count)

    def hold_next(self, count: int) -> None:
        """Keep the next ``count`` API requests waiting (an unresponsive service) until release()."""
        self._holds += count
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def count(self, method: str | None = None, *, prefix: str = "/api/") -> int:
        """Requests seen (by method, under ``prefix``); health probes are not counted by default."""
        return sum(1 for r in self.requests if (method is None or r.method == method) and r.path.startswith(prefix))

    def last(self, *, prefix: str = "/api/") -> SeenRequest:
        """The latest request under ``prefix``: the gateway's health checks of its upstreams
        arrive at any moment, so "the last request" alone may be one of those."""
        return next(r for r in reversed(self.requests) if r.path.startswith(prefix))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.requests.append(SeenRequest(scope["method"], scope["path"], headers))
            if self._holds and scope["path"].startswith("/api/"):
                self._holds -= 1
                await self._released.wait()
            if self._failures and scope["path"].startswith("/api/"):
                status, extra_headers = self._failures.popleft()
                if status == 0:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(b"content-length", b"1000")]})
                    await send({"type": "http.response.body", "body": b"{", "more_body": True})
                    return  # the server closes the connection of an unfinished response
                body = json.dumps({"error_code": "injected_failure", "message": "injected by the test",
                                   "details": None, "request_id": headers.get("x-request-id", "")}).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"7"),
                                        (b"content-length", str(len(body)).encode()), *extra_headers]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
