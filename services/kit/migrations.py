"""Alembic, one migration history per service, run on the app's own async engine.

Embedded mode upgrades on start; on PostgreSQL `flotilla migrate <service>` does it
(an init container in the chart). Concurrent runs serialise on an advisory lock, so
several pods starting at once apply each revision exactly once.

Alembic is imported inside the functions: a service on PostgreSQL never migrates
itself, and alembic is ~10 MB of every process's memory otherwise.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from services.kit.db import Database

if TYPE_CHECKING:
    from alembic.config import Config


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, script_location: Path) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["service"] = service
    return config


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    from alembic import command

    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(db: Database, *, service: str, script_location: Path, revision: str = "head") -> None:
    config = alembic_config(service, script_location)
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            lock_key = zlib.crc32(f"flotilla-migrate-{service}".encode())
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        await conn.run_sync(_upgrade, config, revision)


def run_migrations(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py``."""
    from alembic import context

    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `flotilla migrate <service>`, which supplies the connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table(context.config.attributes["service"]),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
