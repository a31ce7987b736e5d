"""Login brute-force limits: per account and address, per account, per client address, shared
via Redis, Redis outages. The attacks they stop are replayed in tests/security."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from services.auth.app import create_app
from tests.services.conftest import running
from tests.support.auth import (
    PASSWORD,
    auth_settings,
    client_at,
    random_ip,
    register,
    running_auth,
    unique_email,
)
from tests.support.login_limits import assert_throttled, attempt
from tests.support.servers import PostgresServer, RedisServer

HOUR = 3600


async def test_failed_logins_per_account_and_address_are_limited(database_url: str, redis_url: str,
                                                                  tmp_path: Path) -> None:
    app = create_app(auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                                   login_limit_per_account_and_ip="3/minute"))
    async with running(app), client_at(app, random_ip()) as client, client_at(app, random_ip()) as elsewhere:
        victim, bystander = unique_email("victim"), unique_email("bystander")
        await register(client, victim)
        await register(client, bystander)
        for _ in range(3):
            assert (await attempt(client, victim)).status_code == 401
        assert_throttled(await attempt(client, victim), "account_client")
        # Even the right password waits: otherwise the 429 would confirm each guess.
        assert_throttled(await attempt(client, victim, PASSWORD), "account_client")
        assert (await attempt(client, bystander, PASSWORD)).status_code == 200
        assert (await attempt(elsewhere, victim, PASSWORD)).status_code == 200


async def test_failed_logins_per_account_across_addresses_are_limited(database_url: str, redis_url: str,
                                                                       tmp_path: Path) -> None:
    app = create_app(auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                                   login_limit_per_account_and_ip="2/minute", login_limit_per_account="3/hour"))
    async with (running(app), client_at(app, random_ip()) as first, client_at(app, random_ip()) as second,
                client_at(app, random_ip()) as third):
        email = unique_email()
        await register(first, email)
        for _ in range(2):
            assert (await attempt(first, email)).status_code == 401
        for _ in range(3):  # refused by the address's own budget: the account's stays unspent
            assert_throttled(await attempt(first, email), "account_client")
        assert (await attempt(second, email)).status_code == 401
        assert_throttled(await attempt(third, email), "account", window_seconds=HOUR)
        # The accepted trade-off: once addresses together spent it, the owner waits too.
        assert_throttled(await attempt(third, email, PASSWORD), "account", window_seconds=HOUR)


async def test_a_successful_login_clears_the_accounts_failures(database_url: str, redis_url: str,
                                                                tmp_path: Path) -> None:
    settings = auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                             login_limit_per_account_and_ip="3/minute", login_limit_per_account="3/hour")
    async with running_auth(settings) as client:
        email = unique_email()
        await register(client, email)
        for _ in range(2):
            assert (await attempt(client, email)).status_code == 401
        assert (await attempt(client, email, PASSWORD)).status_code == 200
        for _ in range(3):  # both budgets start again
            assert (await attempt(client, email)).status_code == 401


async def test_login_attempts_per_client_address_are_limited(database_url: str, redis_url: str,
                                                             tmp_path: Path) -> None:
    settings = auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                             login_limit_per_ip="4/minute")
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as spraying, client_at(app, random_ip()) as elsewhere:
        for _ in range(4):  # password spraying: one guess per account, many accounts
            assert (await attempt(spraying, unique_email())).status_code == 401
        assert_throttled(await attempt(spraying, unique_email()), "client")
        assert (await attempt(elsewhere, unique_email())).status_code == 401


@pytest.mark.redis
async def test_windows_are_shared_by_replicas_through_redis_under_the_auth_prefix(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = auth_settings(database_url=postgres_server.create_database(f"limits_{uuid.uuid4().hex[:8]}"),
                             redis_url=redis_server.url, data_dir=tmp_path, login_limit_per_account_and_ip="2/minute",
                             login_limit_per_account="3/hour")
    email, ip = unique_email(), random_ip()
    async with (running_auth(settings, ip=ip) as replica_a, running_auth(settings, ip=ip) as replica_b,
                running_auth(settings) as replica_b_elsewhere):
        await register(replica_a, email)
        assert (await attempt(replica_a, email)).status_code == 401
        assert (await attempt(replica_b, email)).status_code == 401
        assert_throttled(await attempt(replica_a, email), "account_client")
        assert_throttled(await attempt(replica_b, email), "account_client")
        assert (await attempt(replica_b_elsewhere, email)).status_code == 401
        assert_throttled(await attempt(replica_b_elsewhere, email), "account", window_seconds=HOUR)

    redis = Redis.from_url(redis_server.url)
    try:
        keys = [key.decode() async for key in redis.scan_iter(match="*login*")]
    finally:
        await redis.aclose()
    assert keys
    assert all(key.startswith("auth:") for key in keys)
    assert not any(email in key for key in keys)  # the shared Redis does not learn addresses


@pytest.mark.redis
async def test_redis_outage_falls_back_to_in_process_limits_never_500(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    redis = RedisServer()
    redis.start()
    try:
        settings = auth_settings(database_url=postgres_server.create_database(f"limits_out_{uuid.uuid4().hex[:8]}"),
                                 redis_url=redis.url, data_dir=tmp_path, login_limit_per_account_and_ip="2/minute",
                                 redis_timeout_seconds=0.3)
        async with running_auth(settings) as client:
            email = unique_email()
            await register(client, email)
            redis.stop()
            assert (await attempt(client, email, PASSWORD)).status_code == 200
            for _ in range(2):
                assert (await attempt(client, email)).status_code == 401
            assert_throttled(await attempt(client, email), "account_client")

            redis.start()
            other = unique_email()
            await register(client, other)
            assert (await attempt(client, other, PASSWORD)).status_code == 200
    finally:
        redis.cleanup()


async def test_registrations_spend_the_same_per_address_budget(tmp_path: Path) -> None:
    """Each registration costs a password hash: a flood from one address is limited too."""
    app = create_app(auth_settings(data_dir=tmp_path, login_limit_per_ip="3/minute"))
    async with running(app), client_at(app, random_ip()) as flooding, client_at(app, random_ip()) as elsewhere:
        for _ in range(3):
            await register(flooding, unique_email())
        refused = await flooding.post("/api/v1/auth/register", json={"email": unique_email(), "password": PASSWORD})
        assert_throttled(refused, "client")
        await register(elsewhere, unique_email())
