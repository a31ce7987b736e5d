"""The real stack: `flotilla` processes on 127.0.0.1, on real PostgreSQL and Redis."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.kit import catalog
from services.launcher import Stack
from tests.support.servers import PostgresServer, RedisServer

PASSWORD = "correct-horse-battery-staple"


def free_port_block() -> int:
    """An offset such that every catalog port + offset is free on 127.0.0.1."""
    ports = [s.local_port for s in catalog.SERVICES]
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            offset = probe.getsockname()[1] - min(ports)
        if offset <= 0 or max(ports) + offset > 65000:
            continue
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port block")


@pytest.fixture
def real_stack(postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    # A database name prefix per test keeps stacks apart on the shared server.
    base = postgres_server.dsn("postgres", driver="postgresql")
    stack = Stack(data_dir=tmp_path, database_url=base, redis_url=redis_server.url, port_offset=free_port_block())
    try:
        stack.start()
        stack.wait_ready(timeout=90)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(data_dir=tmp_path, port_offset=free_port_block())
    try:
        stack.start()
        stack.wait_ready(timeout=90)
        yield stack
    finally:
        stack.stop()


def gateway(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url(catalog.GATEWAY), timeout=10)


def register_and_login(client: httpx.Client, email: str) -> dict[str, str]:
    created = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens: dict[str, str] = login.json()
    return tokens


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
