"""Bare apps the benchmark compares the Flotilla services against.

- ``fastapi_app`` (1) and ``flask_app`` (2) return the same page as ``GET /api/v1/tasks``
  does for the benchmark's user (a full page of 20 tasks) from the same handler body, so
  the difference in throughput is the framework and server, not the work.
- ``proxy_app`` (5) is a one-hop reverse proxy in plain ASGI: every request goes through
  one pooled aiohttp ``ClientSession`` to an upstream (the bare FastAPI app): what the
  gateway's hop costs at the least.
- ``asyncpg_app`` (6) is bare FastAPI reading the same page from PostgreSQL through an
  asyncpg pool (the keyset query of the tasks service): what an uncached read costs at
  the least.

None has auth, a cache, metrics or logging: that is what "bare" means, and what the
services' overhead is measured against. Settings come from ``FLOTILLA_BENCH_*``
environment variables, read when the app starts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from fastapi import FastAPI
from flask import Flask

PAGE_SIZE = 20
#: Rows of the benchmark user's tasks: more than a page, so every read also computes a cursor.
SEED_ROWS = PAGE_SIZE + 5
UPSTREAM_ENV = "FLOTILLA_BENCH_UPSTREAM"
DATABASE_ENV = "FLOTILLA_BENCH_DATABASE_URL"
OWNER_ENV = "FLOTILLA_BENCH_OWNER"
#: asyncpg pool of (6): fixed size (no churn), like a well-tuned service.
POOL_SIZE = 10


def _page() -> dict[str, Any]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    data = [
        {"title": f"bench task {i}", "description": None, "priority": "high",
         "id": f"00000000-0000-4000-8000-{i:012d}", "status": "todo",
         "created_at": (start + timedelta(minutes=i)).isoformat(),
         "updated_at": (start + timedelta(minutes=i)).isoformat()}
        for i in range(PAGE_SIZE)
    ]
    return {"data": data, "count": len(data), "next_cursor": None}


PAGE = _page()


def list_tasks() -> dict[str, Any]:
    return PAGE


fastapi_app = FastAPI()


@fastapi_app.get("/api/v1/tasks")
async def fastapi_list_tasks() -> dict[str, Any]:
    return list_tasks()


flask_app = Flask(__name__)


@flask_app.get("/api/v1/tasks")
def flask_list_tasks() -> dict[str, Any]:
    return list_tasks()


# --- (5) one-hop proxy -----------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Not forwarded (hop-by-hop, or set by the client library for the next hop).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"host", b"content-length"})


class OneHopProxy:
    """Forwards every HTTP request, unchanged, to ``$FLOTILLA_BENCH_UPSTREAM``."""

    def __init__(self) -> None:
        self.upstream = ""
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.upstream = os.environ[UPSTREAM_ENV].rstrip("/")
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=None),
                    auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None, "lifespan startup did not run"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        async with self.session.request(scope["method"], url, headers=headers, data=body or None,
                                        allow_redirects=False) as upstream:
            content = await upstream.read()
            out = [(k.lower(), v) for k, v in upstream.raw_headers if k.lower() not in HOP_BY_HOP]
            out.append((b"content-length", str(len(content)).encode()))
            await send({"type": "http.response.start", "status": upstream.status, "headers": out})
            await send({"type": "http.response.body", "body": content})


proxy_app = OneHopProxy()


# --- (6) bare FastAPI + asyncpg --------------------------------------------------------

TABLE = "bench_tasks"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY,
    owner_id varchar(64) NOT NULL,
    title varchar(200) NOT NULL,
    description text,
    priority varchar(16) NOT NULL,
    status varchar(16) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_{TABLE}_owner_created_id ON {TABLE} (owner_id, created_at DESC, id DESC);
"""
PAGE_QUERY = (f"SELECT id, title, description, priority, status, created_at, updated_at FROM {TABLE} "  # noqa: S608
              "WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2")


def database_dsn(server_dsn: str, database: str) -> str:
    """The plain ``postgresql://`` DSN of ``database`` on the server of ``server_dsn``."""
    parts = urlsplit(server_dsn.replace("postgresql+asyncpg://", "postgresql://", 1))
    return urlunsplit(parts._replace(path=f"/{database}"))


async def seed(server_dsn: str, database: str, owner: str, rows: int = SEED_ROWS) -> None:
    """Create ``database`` on the server if missing, and in it the benchmark table with
    ``rows`` tasks of ``owner`` (the tasks table's shape and index)."""
    conn = await asyncpg.connect(database_dsn(server_dsn, "postgres"), ssl=False, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_dsn(server_dsn, database), ssl=False, timeout=10)
    try:
        await conn.execute(DDL)
        await conn.execute(f"DELETE FROM {TABLE} WHERE owner_id = $1", owner)  # noqa: S608 - our constant
        start = datetime(2024, 1, 1, tzinfo=UTC)
        await conn.executemany(
            f"INSERT INTO {TABLE} VALUES ($1, $2, $3, NULL, 'high', 'todo', $4, $4)",  # noqa: S608
            [(uuid.uuid4(), owner, f"bench task {i}", start + timedelta(minutes=i)) for i in range(rows)])
        await conn.execute(f"ANALYZE {TABLE}")
    finally:
        await conn.close()


@asynccontextmanager
async def _pool(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ[DATABASE_ENV]
    async with asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, ssl=False) as pool:
        app.state.pool = pool
        app.state.owner = os.environ[OWNER_ENV]
        yield


asyncpg_app = FastAPI(lifespan=_pool)


@asyncpg_app.get("/api/v1/tasks")
async def asyncpg_list_tasks() -> dict[str, Any]:
    pool: asyncpg.Pool = asyncpg_app.state.pool
    rows = await pool.fetch(PAGE_QUERY, asyncpg_app.state.owner, PAGE_SIZE + 1)
    page = rows[:PAGE_SIZE]
    data = [{"title": r["title"], "description": r["description"], "priority": r["priority"], "id": str(r["id"]),
             "status": r["status"], "created_at": r["created_at"].isoformat(),
             "updated_at": r["updated_at"].isoformat()} for r in page]
    last = page[-1] if len(rows) > PAGE_SIZE else None
    next_cursor = f"{last['created_at'].isoformat()}|{last['id']}" if last is not None else None
    return {"data": data, "count": len(data), "next_cursor": next_cursor}
