"""One stack for the whole chaos suite, on PostgreSQL and Redis servers of its own.

The servers are separate from the session ones because these tests stop them; the
stack is shared (starting five services costs seconds) and every test begins by
waiting until it is calm again (`calm_stack`), so a test never inherits an outage.

Size: ``FLOTILLA_CHAOS=full`` (``make chaos``) runs longer loads and more fuzz examples;
the default is the bounded version ``make test`` runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.kit import catalog
from tests.support.polling import eventually_sync
from tests.support.servers import PostgresServer, RedisServer, running, wait_for_port
from tests.support.stack import SHARED_STACK_ENV, Stack, free_port_offset

FULL = os.environ.get("FLOTILLA_CHAOS", "").lower() == "full"
#: Never logged by anything we run; the secrets test scans the logs for it.
REDIS_PASSWORD = "chaos-redis-password-must-not-leak"

#: Tuning that makes recoveries happen within a test's patience; none changes behaviour.
STACK_ENV = {
    **SHARED_STACK_ENV,
    # the load comes from a few users on 127.0.0.1: the edge limits would throttle the load
    # itself (the Redis-outage test checks rate limiting on a gateway of its own)
    "GATEWAY_RATE_LIMIT_PER_IP": "100000/second",
    "GATEWAY_RATE_LIMIT_PER_USER": "100000/second",
    "GATEWAY_RATE_LIMIT_REDIS_RETRY_SECONDS": "1",
    "GATEWAY_BREAKER_RECOVERY_SECONDS": "2",
    "GATEWAY_OPENAPI_RETRY_SECONDS": "0",
    "TASKS_RELAY_BACKOFF_MAX_SECONDS": "1",
    # an event still unconfirmed 5 s after its publication is published again
    "TASKS_EVENTS_REPLAY_AFTER_SECONDS": "5",
    "DATA_CONSUMER_BACKOFF_MAX_SECONDS": "1",
    "DATA_CONSUMER_BLOCK_MS": "500",
    # a restarted data service takes over a dead consumer's entries after 2 s idle
    "DATA_CONSUMER_CLAIM_IDLE_MS": "2000",
    "DATA_CONSUMER_CLAIM_INTERVAL_SECONDS": "1",
    "FLOTILLA_GRACEFUL_TIMEOUT": "10",
}


@dataclass
class Scale:
    """How much traffic a scenario sends (bounded in CI, more with FLOTILLA_CHAOS=full)."""

    workers: int = 8
    outage_seconds: float = 3.0
    fuzz_examples: int = 15
    #: Users writing at once in the event-loss scenario (issue 19's table had twenty).
    users: int = 4

    @classmethod
    def current(cls) -> Scale:
        return cls(workers=16, outage_seconds=10.0, fuzz_examples=50, users=20) if FULL else cls()


@dataclass
class DurableRedisServer(RedisServer):
    """Redis as a stream must run in production: append-only file, password required.

    Without persistence a restart loses every event already in the stream and not yet
    consumed; the outage tests restart Redis, so it persists like a real deployment.
    """

    password: str = REDIS_PASSWORD

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--requirepass", self.password],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale.current()


class DurablePostgresServer(PostgresServer):
    """Crash-safe like a production server: the suite's other servers trade durability
    for speed (fsync and synchronous_commit off), and an immediate stop of one of those
    takes back writes it had already acknowledged, and that events had already told
    other services about. The chaos suite kills this one, so its commits must last."""

    def init(self) -> None:
        super().init()
        with (self.data_dir / "postgresql.conf").open("a") as conf:  # later lines win
            conf.write("fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n")


@pytest.fixture(scope="session")
def chaos_postgres() -> Iterator[PostgresServer]:
    with running(DurablePostgresServer()) as server:
        yield server


@pytest.fixture(scope="session")
def chaos_redis() -> Iterator[DurableRedisServer]:
    with running(DurableRedisServer()) as server:
        yield server


@pytest.fixture(scope="session")
def chaos_stack(chaos_postgres: PostgresServer, chaos_redis: DurableRedisServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(data_dir=tmp_path_factory.mktemp("chaos-stack"),
                  database_url=chaos_postgres.dsn("postgres", driver="postgresql"),
                  redis_url=chaos_redis.url, port_offset=free_port_offset(), extra_env=STACK_ENV)
    with stack.running(timeout=90):
        yield stack


def _calm(stack: Stack) -> bool:
    """Every service ready and the gateway healthy (every upstream reachable, breakers closed)."""
    try:
        with httpx.Client(timeout=3) as client:
            for service in stack.services:
                if client.get(f"{stack.url(service)}/health/ready").status_code != 200:
                    return False
            report = client.get(f"{stack.metrics_url(catalog.GATEWAY)}/health").json()
    except httpx.HTTPError:
        return False
    return report["status"] == "healthy" and all(c.get("breaker", "closed") == "closed"
                                                 for c in report["checks"].values())


@pytest.fixture
def calm_stack(chaos_stack: Stack) -> Stack:
    """The shared stack once it has recovered from whatever the previous test did."""
    for service in chaos_stack.services:
        if service.name not in chaos_stack.processes:  # a test crashed it and failed before restarting it
            chaos_stack.start_one(service)
    chaos_stack.wait_ready(timeout=60)
    eventually_sync(lambda: _calm(chaos_stack), within=60, interval=0.2)
    return chaos_stack


def log_dir(stack: Stack) -> Path:
    return stack.data_dir / "logs"
