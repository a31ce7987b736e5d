"""Run one service under uvicorn, with a drain window before graceful shutdown.

On SIGTERM the service first reports not-ready (so load balancers and Kubernetes
endpoints stop sending new requests), keeps serving for ``shutdown_drain_seconds``,
then lets uvicorn finish in-flight requests within ``FLOTILLA_GRACEFUL_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import resource
import socket
from types import FrameType
from typing import Any, cast

import uvicorn
from fastapi import FastAPI

from services.kit.catalog import ServiceInfo
from services.kit.health import Health
from services.kit.http_limits import HttpLimits, protocol_with
from services.kit.metrics import ServiceMetrics
from services.kit.ports import SplitPorts, default_metrics_port
from services.kit.settings import ServiceSettings

GRACEFUL_TIMEOUT_ENV = "FLOTILLA_GRACEFUL_TIMEOUT"
DEFAULT_GRACEFUL_TIMEOUT = 20


class PortInUse(RuntimeError):
    pass


def load_object(path: str) -> object:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_settings(service: ServiceInfo, **overrides: Any) -> ServiceSettings:
    settings_cls = cast(type[ServiceSettings], load_object(service.settings))
    return settings_cls(**overrides)


def build_app(service: ServiceInfo, settings: ServiceSettings) -> FastAPI:
    factory = load_object(service.factory)
    return cast(FastAPI, factory(settings))  # type: ignore[operator]


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"port {port} on {host} is already in use ({exc.strerror})") from None


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, health: Health, drain_seconds: float) -> None:
        super().__init__(config)
        self.health = health
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.health.draining or self.drain_seconds <= 0:
            self.health.draining = True
            super().handle_exit(sig, frame)
            return
        self.health.draining = True
        asyncio.get_running_loop().call_later(self.drain_seconds, super().handle_exit, sig, frame)


#: Above the idle timeout of the load balancers in front (AWS ALB 60 s): a server that
#: closes an idle connection first races the balancer reusing it, and the balancer
#: answers that request with a 502.
KEEP_ALIVE_SECONDS = 75
#: Pending connections the kernel queues before accept (capped by net.core.somaxconn):
#: a burst of thousands of new clients must queue, not be reset.
LISTEN_BACKLOG = 4096


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: each client connection is a descriptor,
    and the common soft default (1024) caps a process at about a thousand clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def listening_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PortInUse(f"port {port} on {host} is already in use ({exc.strerror})") from None
    return sock


def serve(service: ServiceInfo, *, host: str, port: int, metrics_port: int | None = None,
          settings: ServiceSettings | None = None) -> None:
    """Serve the API on ``port`` and metrics + the full health report on ``metrics_port``
    (default ``port + 1000``), one process, one server (``services.kit.ports``)."""
    settings = settings or load_settings(service)
    metrics_port = default_metrics_port(port) if metrics_port is None else metrics_port
    sockets = [listening_socket(host, port), listening_socket(host, metrics_port)]
    raise_open_files_limit()
    app = build_app(service, settings)
    metrics = cast(ServiceMetrics, app.state.metrics)

    def count_refusal(error_code: str) -> None:
        metrics.errors.labels(error_code=error_code).inc()

    config = uvicorn.Config(
        SplitPorts(app, metrics_port=metrics_port),
        loop="auto",  # uvloop when installed
        # httptools with head size/count/time and connection limits (uvicorn has none of
        # them; its limit_concurrency answers text/plain 503s on connections it keeps).
        http=protocol_with(HttpLimits.of(settings), on_refusal=count_refusal),
        lifespan="on",
        ws="none",  # no WebSocket routes: nothing to upgrade to, and no websockets module loaded
        access_log=False,  # RequestContextMiddleware logs one structured line per request
        log_config=None,  # structlog is configured by the app factory
        # X-Forwarded-For/Forwarded only from configured proxies (none by default): an
        # untrusted client must not choose the address its limits are counted under.
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=int(os.environ.get(GRACEFUL_TIMEOUT_ENV, DEFAULT_GRACEFUL_TIMEOUT)),
        server_header=False,
    )
    health = cast(Health, app.state.health)
    DrainingServer(config, health, settings.shutdown_drain_seconds).run(sockets=sockets)
