"""Every service's hand-written migrations create exactly the tables its models describe."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from services.data.app import MIGRATIONS as DATA_MIGRATIONS
from services.data.settings import DataSettings
from services.data.titles import title_key
from services.kit import catalog
from services.kit.db import Database, UTCDateTime
from services.kit.migrations import upgrade
from services.serve import load_settings
from tests.services.conftest import service_env
from tests.support.migrations import migration_drift

WITH_DATABASE = [s for s in catalog.SERVICES if s.has_database]


def declarative_base(service: str) -> type[DeclarativeBase]:
    models = importlib.import_module(f"services.{service}.models")
    bases = [v for v in vars(models).values()
             if isinstance(v, type) and DeclarativeBase in v.__bases__ and v.__module__ == models.__name__]
    assert len(bases) == 1, f"services.{service}.models should define one declarative base, found {bases}"
    return bases[0]


@pytest.mark.parametrize("service", WITH_DATABASE, ids=lambda s: s.name)
async def test_migrations_match_models(service: catalog.ServiceInfo, database_url: str, tmp_path: Path) -> None:
    settings = load_settings(service, **service_env(catalog.env_prefix(service.name), database_url=database_url,
                                                    data_dir=tmp_path))
    migrations = importlib.import_module(f"services.{service.name}.app").MIGRATIONS
    assert await migration_drift(settings, declarative_base(service.name).metadata, migrations) == []



async def test_data_snapshots_get_their_title_keys_on_upgrade(database_url: str, tmp_path: Path) -> None:
    """0002 adds ``title_key``: rows from before it get the key the projection writes now."""
    db = Database(DataSettings(**service_env("DATA_", database_url=database_url, data_dir=tmp_path)))
    before = sa.table("task_snapshots", *(sa.column(name, type_) for name, type_ in (
        ("task_id", sa.Uuid()), ("owner_id", sa.String()), ("title", sa.String()), ("priority", sa.String()),
        ("status", sa.String()), ("deleted", sa.Boolean()), ("first_seen_at", UTCDateTime()),
        ("version_at", UTCDateTime()))))
    titles = ["Buy milk", "  BUY\tmilk ", "\uff22uy milk", "Other"] + [f"t{i}" for i in range(2500)]  # > 2 batches
    now = datetime.now(UTC)
    try:
        await upgrade(db, service="data", script_location=DATA_MIGRATIONS, revision="0001")
        async with db.engine.begin() as conn:
            await conn.execute(before.insert(), [
                {"task_id": uuid.uuid4(), "owner_id": "u", "title": title, "priority": "low", "status": "todo",
                 "deleted": False, "first_seen_at": now, "version_at": now} for title in titles])
        await upgrade(db, service="data", script_location=DATA_MIGRATIONS)
        async with db.engine.connect() as conn:
            keys = dict((await conn.execute(sa.text("SELECT title, title_key FROM task_snapshots"))).all())
    finally:
        await db.dispose()
    assert keys == {title: title_key(title) for title in titles}
    assert len({keys["Buy milk"], keys["  BUY\tmilk "], keys["\uff22uy milk"]}) == 1
