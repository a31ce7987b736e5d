"""The stack a load test runs against: real PostgreSQL and Redis, services on free ports.

The services start exactly as `flotilla up` starts them (``services.launcher.Stack``:
one ``flotilla serve`` process per service, the same environment), shifted to a free
block of ports, so a load test never collides with a stack running on 8000-8004.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.kit import catalog
from services.kit.catalog import ServiceInfo
from services.launcher import Stack, available_services, free_port_offset


def runnable_services() -> list[ServiceInfo]:
    """Installed services whose app module exists (a package being written may lack it)."""
    return [s for s in available_services() if importlib.util.find_spec(s.factory.partition(":")[0]) is not None]


@dataclass
class PrivateStack(Stack):
    """``flotilla up`` on a free block of ports, so it never meets a stack on 8000-8004."""

    port_offset: int = field(default_factory=free_port_offset)

    def service(self, name: str) -> ServiceInfo | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def entry_url(self) -> str:
        """Where clients go: the gateway when present, else the tasks service itself."""
        entry = self.service(catalog.GATEWAY.name) or self.service(catalog.TASKS.name)
        if entry is None:
            raise RuntimeError("neither the gateway nor the tasks service is installed")
        return self.url(entry)


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
        from tests.support.servers import PostgresServer, RedisServer, running
    except ImportError:
        raise RuntimeError("starting throwaway servers needs the repository checkout, "
                           "or pass --database-url and --redis-url") from None
    with ExitStack() as started:
        yield Servers(
            database_url or started.enter_context(running(PostgresServer())).dsn(),
            redis_url or started.enter_context(running(RedisServer())).url,
        )


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
    with stack.running():
        yield stack, time.monotonic() - started
