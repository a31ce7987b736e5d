"""The stack a load test runs against: real PostgreSQL and Redis, services on free ports.

The services start exactly as `flotilla up` starts them (``services.launcher.Stack``:
one ``flotilla serve`` process per service, the same environment), but on free ports,
so a load test never collides with a stack someone is already running on 8000-8004.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.kit import catalog
from services.kit.catalog import ServiceInfo
from services.launcher import Stack, available_services


def runnable_services() -> list[ServiceInfo]:
    """Installed services whose app module exists (a package being written may lack it)."""
    return [s for s in available_services() if importlib.util.find_spec(s.factory.partition(":")[0]) is not None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivateStack(Stack):
    """``flotilla up`` on free ports, with optional extra environment for every service."""

    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services = [replace(s, local_port=free_port()) for s in self.services]

    def service(self, name: str) -> ServiceInfo | None:
        return next((s for s in self.services if s.name == name), None)

    def env_for(self, service: ServiceInfo) -> dict[str, str]:
        # The launcher derives peer URLs from the catalog ports; point them at ours instead.
        env = super().env_for(service)
        prefix = catalog.env_prefix(service.name)
        auth = self.service(catalog.AUTH.name)
        if auth is not None:
            env[f"{prefix}JWKS_URL"] = f"{self.url(auth)}/.well-known/jwks.json"
        if service.name == catalog.GATEWAY.name:
            for backend in self.services:
                if backend.name != catalog.GATEWAY.name:
                    env[f"{prefix}{backend.name.upper()}_URL"] = self.url(backend)
        return {**env, **self.extra_env}

    @property
    def entry_url(self) -> str:
        """Where clients go: the gateway when present, else the tasks service itself."""
        entry = self.service(catalog.GATEWAY.name) or self.service(catalog.TASKS.name)
        if entry is None:
            raise RuntimeError("neither the gateway nor the tasks service is installed")
        return self.url(entry)

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}


@dataclass
class Servers:
    database_url: str
    redis_url: str


@contextmanager
def servers(database_url: str = "", redis_url: str = "") -> Iterator[Servers]:
    """The given PostgreSQL/Redis, or throwaway ones started (and removed) for this run."""
    if database_url and redis_url:
        yield Servers(database_url, redis_url)
        return
    # One copy of the throwaway-server code, shared with the test suite. The load test
    # runs from a checkout, like the tests; a console script does not put the checkout
    # on sys.path, so add it when it holds the test support package.
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "tests" / "support" / "servers.py").exists() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    try:
        from tests.support.servers import PostgresServer, RedisServer
    except ImportError:
        raise RuntimeError("starting throwaway servers needs the repository checkout, "
                           "or pass --database-url and --redis-url") from None
    postgres = None if database_url else PostgresServer()
    redis = None if redis_url else RedisServer()
    try:
        if postgres is not None:
            postgres.start()
        if redis is not None:
            redis.start()
        yield Servers(postgres.dsn() if postgres else database_url, redis.url if redis else redis_url)
    finally:
        if redis is not None:
            redis.cleanup()
        if postgres is not None:
            postgres.cleanup()


@contextmanager
def running_stack(
    data_dir: Path,
    *,
    database_url: str,
    redis_url: str,
    extra_env: Mapping[str, str] | None = None,
    services: list[ServiceInfo] | None = None,
) -> Iterator[tuple[PrivateStack, float]]:
    """Start the stack, wait until every service is ready; yields it and the seconds that took."""
    stack = PrivateStack(host="127.0.0.1", data_dir=data_dir, database_url=database_url, redis_url=redis_url,
                         services=runnable_services() if services is None else services,
                         extra_env=dict(extra_env or {}))
    started = time.monotonic()
    try:
        stack.start()
        stack.wait_ready()
        yield stack, time.monotonic() - started
    finally:
        stack.stop()
