"""Every service's hand-written migrations create exactly the tables its models describe."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from sqlalchemy.orm import DeclarativeBase

from services.kit import catalog
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
