"""Async SQLAlchemy: one engine per service, pooled for PostgreSQL (asyncpg).

SQLite (aiosqlite) is only the embedded default for running without servers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

from services.kit.settings import ServiceSettings


def engine_options(settings: ServiceSettings) -> dict[str, Any]:
    if settings.uses_postgres:
        return {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout_seconds,
            "pool_recycle": settings.db_pool_recycle_seconds,
            # Pre-ping turns a connection killed by a PostgreSQL restart into a fresh one
            # instead of an error on the request that happened to pick it up.
            "pool_pre_ping": True,
            "connect_args": {
                # Fail fast when the server is down instead of hanging the request.
                "timeout": settings.db_pool_timeout_seconds,
                "command_timeout": max(1.0, settings.db_statement_timeout_ms / 1000 + 1),
                "server_settings": {
                    "statement_timeout": str(settings.db_statement_timeout_ms),
                    "application_name": f"flotilla-{settings.service_name}",
                },
            },
        }
    return {"connect_args": {"timeout": 30}}


class Database:
    def __init__(self, settings: ServiceSettings) -> None:
        if not settings.uses_postgres:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = settings.sqlalchemy_url
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options(settings))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def checked_out(self) -> float:
        checkedout = getattr(self.engine.pool, "checkedout", None)
        return float(checkedout()) if callable(checkedout) else 0.0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

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
