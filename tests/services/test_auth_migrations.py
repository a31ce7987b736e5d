"""auth's migrations create exactly the tables its models describe."""

from __future__ import annotations

from pathlib import Path

from services.auth.app import MIGRATIONS
from services.auth.models import AuthBase
from tests.support.auth import auth_settings
from tests.support.migrations import migration_drift


async def test_migrations_match_models(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url=database_url, data_dir=tmp_path)
    assert await migration_drift(settings, AuthBase.metadata, MIGRATIONS) == []
