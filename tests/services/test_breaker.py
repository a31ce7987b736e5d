"""The kit's circuit breaker: a short first wait before a trial, doubled after each failed
trial up to the cap, and back to the short wait once a trial succeeds."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from services.kit.breaker import Breakers
from services.kit.db import Database
from services.kit.errors import DependencyUnavailable
from services.kit.metrics import ServiceMetrics
from services.tasks.settings import TasksSettings
from tests.services.conftest import service_env
from tests.support.polling import eventually
from tests.support.servers import PostgresServer


class Boom(Exception):
    pass


async def fail(breakers: Breakers, name: str) -> None:
    with pytest.raises(Boom):
        async with breakers.guard(name):
            raise Boom


async def trial_let_through(breakers: Breakers, name: str, *, succeed: bool) -> bool:
    """True once the open breaker lets a call through (which then succeeds or fails)."""
    try:
        async with breakers.guard(name):
            if not succeed:
                raise Boom
    except DependencyUnavailable:
        return False
    except Boom:
        return True
    return True


async def wait_of(breakers: Breakers, name: str) -> float:
    return float((await breakers.factory.get_breaker(name)).context.ttl)


async def test_the_wait_before_a_trial_doubles_after_each_failed_trial_and_resets_on_success() -> None:
    breakers = Breakers(ServiceMetrics("test", "0"), threshold=2, first_recovery_seconds=0.05,
                        recovery_seconds=0.15)
    await fail(breakers, "dep")
    await fail(breakers, "dep")
    assert await breakers.state("dep") == "opened"
    assert await wait_of(breakers, "dep") == 0.05

    waits = []
    for _ in range(3):  # each failed trial opens the breaker again, for longer (up to the cap)
        await eventually(lambda: trial_let_through(breakers, "dep", succeed=False))
        assert await breakers.state("dep") == "opened"
        waits.append(await wait_of(breakers, "dep"))
    assert waits == [0.1, 0.15, 0.15]

    await eventually(lambda: trial_let_through(breakers, "dep", succeed=True))
    assert await breakers.state("dep") == "closed"
    await fail(breakers, "dep")
    await fail(breakers, "dep")
    assert await wait_of(breakers, "dep") == 0.05  # a new outage starts from the short wait


async def test_an_open_breaker_refuses_fast_with_the_time_left_as_retry_after() -> None:
    breakers = Breakers(ServiceMetrics("test", "0"), threshold=1, first_recovery_seconds=3.0)
    await fail(breakers, "dep")
    with pytest.raises(DependencyUnavailable) as refused:
        async with breakers.guard("dep"):
            raise AssertionError("an open breaker lets nothing through before its wait")
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 3


async def test_a_database_back_from_an_outage_takes_the_first_call_after_the_short_wait(
    own_postgres: PostgresServer,
) -> None:
    """PostgreSQL down: the breaker opens. PostgreSQL back: the first call the breaker lets
    through after its (short) wait succeeds and closes it, with no long fixed window."""
    settings = TasksSettings(**service_env("TASKS_", database_url=own_postgres.create_database("breaker"),
                                           db_pool_timeout_seconds=1.0))
    db = Database(settings)
    breakers = Breakers(ServiceMetrics("test", "0"), threshold=2)
    try:
        async with breakers.guard("database"):
            await db.ping()
        own_postgres.stop()
        for _ in range(2):
            with pytest.raises((OSError, DBAPIError)) as failed:
                async with breakers.guard("database"):
                    await db.ping()
            assert not isinstance(failed.value, DependencyUnavailable)
        assert await breakers.state("database") == "opened"
        own_postgres.start()

        async def write_goes_through() -> bool:
            try:
                async with breakers.guard("database"):
                    await db.ping()
            except DependencyUnavailable:
                return False
            return True

        await eventually(write_goes_through)
        assert await breakers.state("database") == "closed"
        # the only wait was the first, short one: no failed trial made it grow
        assert await wait_of(breakers, "database") == breakers.first_recovery_seconds
    finally:
        await db.dispose()
