"""Login brute-force limits: per account, per client address, shared via Redis, Redis outages."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
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
from tests.support.error_shape import assert_error_shape
from tests.support.servers import PostgresServer, RedisServer


async def attempt(client: httpx.AsyncClient, email: str, password: str = "wrong " + PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


def assert_throttled(response: httpx.Response, scope: str) -> None:
    body = assert_error_shape(response, 429, "rate_limited")
    assert body["details"] == {"scope": scope}
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_failed_logins_per_account_are_limited(database_url: str, redis_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                             login_limit_per_account="3/minute")
    async with running_auth(settings) as client:
        victim, bystander = unique_email("victim"), unique_email("bystander")
        await register(client, victim)
        await register(client, bystander)
        for _ in range(3):
            assert (await attempt(client, victim)).status_code == 401
        assert_throttled(await attempt(client, victim), "account")
        # Even the right password waits: otherwise the 429 would confirm each guess.
        assert_throttled(await attempt(client, victim, PASSWORD), "account")
        assert (await attempt(client, bystander, PASSWORD)).status_code == 200


async def test_a_successful_login_clears_the_accounts_failures(database_url: str, redis_url: str,
                                                                tmp_path: Path) -> None:
    settings = auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                             login_limit_per_account="3/minute")
    async with running_auth(settings) as client:
        email = unique_email()
        await register(client, email)
        for _ in range(2):
            assert (await attempt(client, email)).status_code == 401
        assert (await attempt(client, email, PASSWORD)).status_code == 200
        for _ in range(3):
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
                             redis_url=redis_server.url, data_dir=tmp_path, login_limit_per_account="2/minute")
    email = unique_email()
    async with running_auth(settings) as replica_a, running_auth(settings) as replica_b:
        await register(replica_a, email)
        assert (await attempt(replica_a, email)).status_code == 401
        assert (await attempt(replica_b, email)).status_code == 401
        assert_throttled(await attempt(replica_a, email), "account")
        assert_throttled(await attempt(replica_b, email), "account")

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
                                 redis_url=redis.url, data_dir=tmp_path, login_limit_per_account="2/minute",
                                 redis_timeout_seconds=0.3)
        async with running_auth(settings) as client:
            email = unique_email()
            await register(client, email)
            redis.stop()
            assert (await attempt(client, email, PASSWORD)).status_code == 200
            for _ in range(2):
                assert (await attempt(client, email)).status_code == 401
            assert_throttled(await attempt(client, email), "account")

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
