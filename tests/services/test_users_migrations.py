"""users' migrations create exactly the tables its models describe."""

from __future__ import annotations

from pathlib import Path

from services.users.app import MIGRATIONS
from services.users.models import UsersBase
from services.users.settings import UsersSettings
from tests.services.conftest import service_env
from tests.support.migrations import migration_drift


async def test_migrations_match_models(database_url: str, tmp_path: Path) -> None:
    settings = UsersSettings(**service_env("USERS_", database_url=database_url, data_dir=tmp_path))
    assert await migration_drift(settings, UsersBase.metadata, MIGRATIONS) == []
