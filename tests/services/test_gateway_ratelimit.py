"""Edge rate limits: per user and per client IP, in process or shared through real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from services.gateway.app import create_app
from services.gateway.ratelimit import KEY_PREFIX, Check, EdgeRateLimiter, parse_limits
from services.kit.errors import TooManyRequests
from tests.services.conftest import running
from tests.services.gateway_support import gateway_settings, live_tasks
from tests.support.auth import client_at, random_ip
from tests.support.error_shape import assert_error_shape
from tests.support.live import Recorder
from tests.support.polling import eventually
from tests.support.servers import RedisServer, free_port
from tests.support.tokens import auth_header


@pytest.fixture
async def tasks(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder]]:
    async with live_tasks(tmp_path) as upstream:
        yield upstream


@asynccontextmanager
async def gateway_at(ip: str, **overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A running gateway, and a client of it whose requests come from ``ip``."""
    app = create_app(gateway_settings(**overrides))
    async with running(app), client_at(app, ip) as client:
        yield client, app


def user() -> dict[str, str]:
    return auth_header(f"user-{uuid.uuid4().hex[:8]}")


def assert_rate_limited(response: httpx.Response, *, limit: int, scope: str) -> None:
    body = assert_error_shape(response, 429, "rate_limited")
    assert body["details"]["scope"] == scope
    assert 1 <= int(response.headers["retry-after"]) <= 3600
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-reset"]) >= int(time.time())


async def test_per_user_limit_in_process(tasks: tuple[str, Recorder]) -> None:
    url, recorder = tasks
    alice, bob = user(), user()
    async with gateway_at(random_ip(), tasks_url=url, rate_limit_per_user="3/hour") as (client, _):
        for _ in range(3):
            assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert_rate_limited(await client.get("/api/v1/tasks", headers=alice), limit=3, scope="user")
        assert recorder.count() == 3  # the refused request never reached the service
        assert (await client.get("/api/v1/tasks", headers=bob)).status_code == 200


async def test_per_ip_limit_counts_anonymous_traffic_too(tasks: tuple[str, Recorder]) -> None:
    url, _ = tasks
    ip = random_ip()
    async with gateway_at(ip, tasks_url=url, rate_limit_per_ip="4/hour") as (client, app):
        for _ in range(4):
            assert (await client.get("/api/v1/tasks")).status_code == 401
        # Token guessing from one address runs into the address's limit.
        assert_rate_limited(await client.get("/api/v1/tasks", headers=user()), limit=4, scope="ip")
        async with client_at(app, random_ip()) as elsewhere:
            assert (await elsewhere.get("/api/v1/tasks", headers=user())).status_code == 200


async def test_limits_are_shared_by_replicas_through_redis(redis_server: RedisServer,
                                                           tasks: tuple[str, Recorder]) -> None:
    url, _ = tasks
    alice, ip = user(), random_ip()
    settings = {"tasks_url": url, "redis_url": redis_server.url, "rate_limit_per_user": "3/hour"}
    async with gateway_at(ip, **settings) as (first, _), gateway_at(ip, **settings) as (second, _):
        assert (await first.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert (await second.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert (await first.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert_rate_limited(await second.get("/api/v1/tasks", headers=alice), limit=3, scope="user")

    redis = Redis.from_url(redis_server.url)
    try:
        keys = [key.decode() async for key in redis.scan_iter(match="*ratelimit*")]
    finally:
        await redis.aclose()
    assert keys
    # inside the gateway's namespace, which its Redis ACL (gateway:*) allows
    assert all(key.startswith("gateway:ratelimit:") for key in keys), keys


async def test_unreachable_redis_degrades_to_in_process_limits(tasks: tuple[str, Recorder]) -> None:
    url, _ = tasks
    alice = user()
    async with gateway_at(random_ip(), tasks_url=url, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                          redis_timeout_seconds=0.2, rate_limit_per_user="3/hour") as (client, _):
        for _ in range(3):
            assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert_rate_limited(await client.get("/api/v1/tasks", headers=alice), limit=3, scope="user")
        assert (await client.get("/health/ready")).status_code == 200


async def test_redis_outage_and_return(own_redis: RedisServer, tasks: tuple[str, Recorder]) -> None:
    url, _ = tasks
    alice = user()
    redis = Redis.from_url(own_redis.url)

    async def counted_in_redis() -> bool:
        return bool([key async for key in redis.scan_iter(match="gateway:ratelimit:*")])

    async with gateway_at(random_ip(), tasks_url=url, redis_url=own_redis.url, redis_timeout_seconds=0.2,
                          rate_limit_redis_retry_seconds=0.1) as (client, _):
        assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert await counted_in_redis()
        await redis.aclose()

        own_redis.stop()
        for _ in range(5):
            assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
        own_redis.start()  # empty again: no persistence

        redis = Redis.from_url(own_redis.url)

        async def back_on_redis() -> bool:
            assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
            return await counted_in_redis()

        await eventually(back_on_redis)
    await redis.aclose()


@pytest.mark.parametrize("through_redis", [True, False])
async def test_all_limits_in_one_call_count_what_limits_itself_reads(redis_server: RedisServer,
                                                                      through_redis: bool) -> None:
    """Both scopes are counted in one round trip, on `limits`' own keys and algorithm."""
    limiter = EdgeRateLimiter(redis_url=redis_server.url if through_redis else "")
    ip, user_id = random_ip(), f"user-{uuid.uuid4().hex[:8]}"
    by_ip = Check("ip", ip, parse_limits("10/minute"))
    by_user = Check("user", user_id, parse_limits("3/minute;100/hour"))
    try:
        for _ in range(3):
            await limiter.enforce(by_ip, by_user)
        with pytest.raises(TooManyRequests) as refused:
            await limiter.enforce(by_ip, by_user)
        assert refused.value.details == {"limit": "3 per 1 minute", "scope": "user"}
        assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
        if through_redis:
            reader = SlidingWindowCounterRateLimiter(RedisStorage(f"async+{redis_server.url}", implementation="redispy",
                                                                key_prefix=KEY_PREFIX))
        else:
            reader = limiter._memory
        # The address was counted for all four attempts; the user's hourly limit only for
        # the three that passed its per-minute limit.
        assert (await reader.get_window_stats(by_ip.items[0], "ip", ip)).remaining == 6
        assert (await reader.get_window_stats(by_user.items[1], "user", user_id)).remaining == 97
    finally:
        await limiter.close()
