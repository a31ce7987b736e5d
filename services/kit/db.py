"""Async SQLAlchemy: one engine per service, pooled for PostgreSQL (asyncpg).

SQLite (aiosqlite) is only the embedded default for running without servers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event, exc, make_url, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

from services.kit.settings import ServiceSettings


def engine_options(settings: ServiceSettings) -> dict[str, Any]:
    if settings.uses_postgres:
        connect_args: dict[str, Any] = {
            # Fail fast when the server is down instead of hanging the request.
            "timeout": settings.db_pool_timeout_seconds,
            "command_timeout": max(1.0, settings.db_statement_timeout_ms / 1000 + 1),
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": f"flotilla-{settings.service_name}",
            },
        }
        if _is_local_without_tls_choice(settings.sqlalchemy_url):
            # asyncpg's default (sslmode=prefer) asks for TLS first on every new connection;
            # over loopback that is a wasted round trip. Anywhere else the URL decides
            # (``?ssl=require`` in a cluster) and asyncpg's default stands.
            connect_args["ssl"] = False
        return {
            # A fixed-size pool: overflow connections are closed on return, so under
            # steady load above the pool size they were opened and closed per request.
            # Beyond the pool, requests wait up to pool_timeout and then get a 503.
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout_seconds,
            "pool_recycle": settings.db_pool_recycle_seconds,
            # No pool_pre_ping: on asyncpg it costs BEGIN + query + ROLLBACK on every
            # checkout. _discard_closed_connection catches what it was for (connections
            # a PostgreSQL restart closed) without a round trip.
            "pool_pre_ping": False,
            "connect_args": connect_args,
        }
    return {"connect_args": {"timeout": 30}}


def _is_local_without_tls_choice(url: str) -> bool:
    parsed = make_url(url)
    if {"ssl", "sslmode"} & set(parsed.query):
        return False
    host = parsed.host or ""
    if host in ("", "localhost") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _discard_closed_connection(dbapi_connection: Any, _record: ConnectionPoolEntry,
                               _proxy: PoolProxiedConnection) -> None:
    """Pool checkout hook: hand out no connection the server has already closed.

    A PostgreSQL restart (or crash, or an idle-session timeout) closes the server side
    of every pooled connection; asyncpg notices the socket's EOF as it happens, so a
    flag check replaces pre-ping's round trip. Raising DisconnectionError makes the
    pool drop this connection and check out (or open) another.
    """
    raw = getattr(dbapi_connection, "_connection", None)
    if raw is not None and raw.is_closed():
        raise exc.DisconnectionError("connection closed by the server")


class Database:
    def __init__(self, settings: ServiceSettings) -> None:
        if not settings.uses_postgres:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = settings.sqlalchemy_url
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options(settings))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine.pool, "checkout", _discard_closed_connection)
        # Same pool; work that is a single statement skips BEGIN/COMMIT (two round trips).
        # Anything that needs several statements to be atomic or see one snapshot uses a
        # transaction.
        self.autocommit_engine: AsyncEngine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def checked_out(self) -> float:
        checkedout = getattr(self.engine.pool, "checkedout", None)
        return float(checkedout()) if callable(checkedout) else 0.0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection without BEGIN/COMMIT: for work that is one statement (atomic alone)."""
        async with self.autocommit_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without error."""
        async with self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL lets readers proceed during a write; busy_timeout waits instead of failing
    # with "database is locked" when two requests write at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored
    as naive UTC and made aware again on the way out. Keyset cursors compare these,
    so both backends must order them identically.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
