"""The scale benchmark's seeded snapshot rows carry the same title key the data service computes."""

from __future__ import annotations

import asyncpg
import pytest

from loadtest import seeding
from services.data.titles import title_key
from tests.support.servers import PostgresServer

pytestmark = [pytest.mark.postgres]


async def test_seeded_title_keys_are_the_data_services_keys(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn(driver="postgresql"), ssl=False)
    try:
        rows = await conn.fetch(f"SELECT {seeding.TITLE_SQL}, {seeding.TITLE_KEY_SQL} "  # noqa: S608 - module constants
                                "FROM generate_series(0, 2) AS g")
    finally:
        await conn.close()
    assert [key for _, key in rows] == [title_key(title) for title, _ in rows]
