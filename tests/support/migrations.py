"""Check that a service's hand-written migrations build exactly what its models declare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from services.kit.db import Database
from services.kit.migrations import upgrade, version_table
from services.kit.settings import ServiceSettings


async def migration_drift(settings: ServiceSettings, metadata: MetaData, script_location: Path) -> list[Any]:
    """Differences between the migrated schema and ``metadata``; empty when they agree."""
    db = Database(settings)
    try:
        await upgrade(db, service=settings.service_name, script_location=script_location)

        def compare(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(connection, opts={
                "compare_type": True, "version_table": version_table(settings.service_name),
            })
            return list(compare_metadata(context, metadata))

        async with db.engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await db.dispose()
