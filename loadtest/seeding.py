"""Bulk rows for `python -m loadtest scale`, written straight into the services' databases.

Not through the API: a million tasks through HTTP would take hours and measure the
API, not the data size. One ``INSERT ... SELECT generate_series`` per table inside
PostgreSQL: the tasks service's ``tasks`` table and the data service's
``task_snapshots`` table get the same rows (the same ids, owners, titles), as if every
task had been created through tasks and its event consumed by data. Row ``g`` belongs to
owner ``seed-user-<g mod owners>`` and has title ``seed title <g mod TITLES>``, so at
large sizes every title is shared by many users and counts as popular (at 1 M rows over
100 K owners: 100 owners a title, each seen first over a week ago); at small sizes the
titles stay below data's privacy threshold (``DATA_POPULAR_MIN_USERS``) and the popular
list is empty, still one cache read per request. Ids are derived from ``g``, so a
second call continues where the first stopped (``start``) and sizes grow by top-up.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from loadtest.baselines import database_dsn
from services.launcher import per_service_database_url

TITLES = 1000
#: Row g's id: a UUID from g, identical in both databases.
_ID = "md5('flotilla-seed-' || g)::uuid"
_OWNER = "'seed-user-' || (g % $3)"
TITLE_SQL = f"'seed title ' || (g % {TITLES})"
#: ``services.data.titles.title_key`` of it: seed titles are already normalised (lower
#: case, single spaces), so the key is the SHA-256 of the title itself.
TITLE_KEY_SQL = f"encode(sha256(convert_to({TITLE_SQL}, 'UTF8')), 'hex')"
_PRIORITY = "(ARRAY['low','medium','high'])[1 + g % 3]"
_STATUS = "(ARRAY['todo','in_progress','done'])[1 + g % 3]"
#: Spread over the last year, one second apart, so keyset pages have distinct times.
_WHEN = "now() - make_interval(secs => g)"

TASKS_SQL = f"""
INSERT INTO tasks (id, owner_id, title, description, priority, status, created_at, updated_at)
SELECT {_ID}, {_OWNER}, {TITLE_SQL}, NULL, {_PRIORITY}, {_STATUS}, {_WHEN}, {_WHEN}
FROM generate_series($1::bigint, $2::bigint) AS g
"""  # noqa: S608 - built from this module's constants only
SNAPSHOTS_SQL = f"""
INSERT INTO task_snapshots (task_id, owner_id, title, title_key, priority, status, deleted, first_seen_at, version_at)
SELECT {_ID}, {_OWNER}, {TITLE_SQL}, {TITLE_KEY_SQL}, {_PRIORITY}, {_STATUS}, false, {_WHEN}, {_WHEN}
FROM generate_series($1::bigint, $2::bigint) AS g
"""  # noqa: S608 - built from this module's constants only
TABLES = {"tasks": ("tasks", TASKS_SQL), "data": ("task_snapshots", SNAPSHOTS_SQL)}


def service_dsn(server_url: str, service: str) -> str:
    """The plain DSN of a service's own database on the stack's server."""
    url = per_service_database_url(server_url, service)
    return database_dsn(url, url.rsplit("/", 1)[1])


async def _seed_one(dsn: str, table: str, sql: str, start: int, stop: int, owners: int) -> int:
    conn = await asyncpg.connect(dsn, ssl=False, timeout=10)
    try:
        await conn.execute(sql, start, stop - 1, owners, timeout=600)
        await conn.execute(f"ANALYZE {table}", timeout=600)  # plans as after autovacuum
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}", timeout=600))  # noqa: S608
    finally:
        await conn.close()


async def _seed(server_url: str, start: int, stop: int, owners: int) -> dict[str, int]:
    counts = await asyncio.gather(*(
        _seed_one(service_dsn(server_url, service), table, sql, start, stop, owners)
        for service, (table, sql) in TABLES.items()))
    return {table: count for (table, _), count in zip(TABLES.values(), counts, strict=True)}


def seed(server_url: str, *, start: int, stop: int, owners: int) -> tuple[dict[str, int], float]:
    """Rows ``start <= g < stop`` into both tables (both at once); the row counts after, and seconds."""
    began = time.monotonic()
    counts = asyncio.run(_seed(server_url, start, stop, owners)) if stop > start else {}
    return counts, time.monotonic() - began
