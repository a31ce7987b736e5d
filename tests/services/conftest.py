"""Fixtures to run a service app in-process against the real servers or SQLite."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import test_jwks

_db_names = itertools.count()

AppFactory = Callable[..., FastAPI]


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def service_env(
    prefix: str, *, database_url: str = "", redis_url: str = "", data_dir: Path | None = None, **extra: Any
) -> dict[str, Any]:
    """Settings kwargs for a service under test (prefix unused: we pass kwargs, not env)."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_public_jwks": test_jwks(),
        "log_json": True,
        "migrate_on_start": True,
        # Tasks' relay would otherwise post test events to a dev stack on :8004 (port 9: discard).
        "data_url": "http://127.0.0.1:9",
        **extra,
    }
    if data_dir is not None:
        values["data_dir"] = data_dir
    return values


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database per test: a SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"t{next(_db_names)}_" + re.sub(r"[^a-z0-9_]", "_", request.node.name[:40].lower()))


@pytest.fixture
def redis_url(backend: str, request: pytest.FixtureRequest) -> str:
    """Redis alongside PostgreSQL, emptied first (caches and counters of earlier tests would
    leak into this one); the SQLite runs use the in-process cache, like `flotilla up`."""
    if backend == "sqlite":
        return ""
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    return server.url
