"""PostgreSQL's own counters over a measured window: sessions opened and transactions.

CPU time says how much PostgreSQL worked; these say on what. A new session is a fork,
an authentication (SCRAM: thousands of hash rounds) and cold catalog caches, so sessions
opened under steady load point at a churning pool; more transactions than requests point
at per-checkout pings or reads inside explicit transactions. Read from
``pg_stat_database`` (all databases of the server), which backends update at least once
a second, so a window's figures are good to about a second's worth of traffic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

QUERY = ("SELECT coalesce(sum(sessions), 0)::bigint AS sessions, "
         "coalesce(sum(xact_commit + xact_rollback), 0)::bigint AS xacts FROM pg_stat_database")


@dataclass
class PgCounters:
    sessions: int
    xacts: int


async def _read(dsn: str) -> PgCounters:
    conn = await asyncpg.connect(dsn, ssl=False, timeout=10)
    try:
        row = await conn.fetchrow(QUERY)
    finally:
        await conn.close()
    assert row is not None
    return PgCounters(int(row["sessions"]), int(row["xacts"]))


def read_counters(dsn: str) -> PgCounters | None:
    """The server's counters now; None when they cannot be read (no PostgreSQL, no rights)."""
    try:
        return asyncio.run(_read(dsn))
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return None


class PgMeter:
    """Sessions opened and transactions run on a PostgreSQL server between start() and stop()."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._started: PgCounters | None = None
        self.used: PgCounters | None = None

    def start(self) -> None:
        self._started = read_counters(self.dsn)

    def stop(self) -> PgCounters | None:
        ended = read_counters(self.dsn)
        if self._started is None or ended is None:
            self.used = None
        else:
            # The meter's own second connection (and its transaction) is not the workload's.
            self.used = PgCounters(max(0, ended.sessions - self._started.sessions - 1),
                                   max(0, ended.xacts - self._started.xacts - 1))
        return self.used
