"""The real stack: `flotilla` processes on 127.0.0.1, on real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.launcher import Stack
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import PASSWORD, SHARED_STACK_ENV, bearer, free_port_offset, gateway, register_and_login

#: The gateway's breaker waits 30 s before it tries a recovered upstream; the outage tests
#: need the same behaviour, not the same wait.
STACK_ENV = {**SHARED_STACK_ENV, "GATEWAY_BREAKER_RECOVERY_SECONDS": "5"}

# Shared with the chaos suite (tests/support/stack.py); re-exported for the e2e tests.
__all__ = ["PASSWORD", "bearer", "embedded_stack", "free_port_offset", "gateway", "real_stack", "register_and_login"]


@pytest.fixture
def real_stack(postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    # A database name prefix per test keeps stacks apart on the shared server: the URL's
    # database is the prefix of the per-service ones (e2e_<id>_tasks, ...), created on start.
    base = postgres_server.dsn(f"e2e_{uuid.uuid4().hex[:8]}", driver="postgresql")
    redis_server.flush()  # the services' key prefixes are fixed: start without earlier tests' caches
    stack = Stack(data_dir=tmp_path, database_url=base, redis_url=redis_server.url, port_offset=free_port_offset(),
                  extra_env=STACK_ENV)
    with stack.running(timeout=90):
        yield stack


def running_embedded_stack(data_dir: Path) -> Iterator[Stack]:
    """What `make up` runs: every service its own process, on embedded defaults."""
    stack = Stack(data_dir=data_dir, port_offset=free_port_offset(), extra_env=STACK_ENV)
    with stack.running(timeout=90):
        yield stack


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[Stack]:
    yield from running_embedded_stack(tmp_path)
