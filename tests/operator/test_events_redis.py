"""Issue 19.3: a ServiceSpec can put its task event stream on a Redis other than the cache.

``spec.redis.events: Dedicated`` gives the ACL user (same name, rules and password) on the
operator's events Redis too, and the Secret an ``EVENTS_REDIS_URL`` next to ``REDIS_URL``.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from flotilla_operator.handlers import ROTATE_ANNOTATION
from flotilla_operator.settings import OperatorSettings

from tests.operator.harness import Cluster, running_operator
from tests.support.polling import eventually
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _acl_user(server_url: str, username: str) -> object:
    admin = aioredis.Redis.from_url(server_url)
    try:
        return await admin.acl_getuser(username)
    finally:
        await admin.aclose()


async def _works(url: str, key: str) -> bool:
    client = aioredis.Redis.from_url(url)
    try:
        await client.set(key, "v", ex=60)
        return bool(await client.get(key) == b"v")
    except redis.exceptions.AuthenticationError:
        return False
    finally:
        await client.aclose()


async def test_dedicated_events_redis(cluster: Cluster, operator_settings: OperatorSettings, own_redis: RedisServer,
                                      namespace: str, name: str) -> None:
    settings = OperatorSettings.model_validate(operator_settings.model_dump()
                                               | {"events_redis_admin_url": own_redis.url})
    async with running_operator(settings):
        await cluster.apply(namespace, name, {"redis": {"events": "Dedicated"}, "database": {"enabled": False}})
        await cluster.wait_phase(namespace, name, "Ready")
        secret = await cluster.secret(namespace, f"{name}-redis")
        assert secret is not None
        assert f":{own_redis.port}/" in secret["EVENTS_REDIS_URL"]
        assert secret["EVENTS_REDIS_URL"] != secret["REDIS_URL"]
        assert await _works(secret["EVENTS_REDIS_URL"], f"{name}:stream")
        assert await _works(secret["REDIS_URL"], f"{name}:cache")
        with pytest.raises(redis.exceptions.NoPermissionError):
            await _works(secret["EVENTS_REDIS_URL"], "elsewhere:key")

        # One rotation covers both servers: the old password works on both until retired.
        await cluster.annotate(namespace, name, {ROTATE_ANNOTATION: "1"})

        async def rotated() -> dict[str, str] | None:
            new = await cluster.secret(namespace, f"{name}-redis")
            return new if new and new["password"] != secret["password"] else None
        new = await eventually(rotated, message="Secret rotated")
        assert await _works(new["EVENTS_REDIS_URL"], f"{name}:stream")
        assert await _works(secret["EVENTS_REDIS_URL"], f"{name}:stream")

        # Back to Shared: no EVENTS_REDIS_URL, no user left on the events Redis.
        await cluster.patch_spec(namespace, name, {"redis": {"events": "Shared"}})

        async def shared() -> bool:
            current = await cluster.secret(namespace, f"{name}-redis") or {}
            return "EVENTS_REDIS_URL" not in current and await _acl_user(own_redis.url, current["username"]) is None
        await eventually(shared, message="events Redis released")
        obj = await cluster.wait_phase(namespace, name, "Ready")
        assert obj["status"]["redis"]["events"] == "Shared"


async def test_dedicated_without_an_events_redis_is_reported(cluster: Cluster, operator_settings: OperatorSettings,
                                                             namespace: str, name: str) -> None:
    async with running_operator(operator_settings):
        await cluster.apply(namespace, name, {"redis": {"events": "Dedicated"}, "database": {"enabled": False}})

        async def reported() -> bool:
            condition = await cluster.condition(namespace, name, "RedisReady") or {}
            return condition.get("reason") == "EventsRedisNotConfigured"
        await eventually(reported, message="RedisReady False: EventsRedisNotConfigured")


def test_the_events_redis_must_be_another_server(operator_settings: OperatorSettings) -> None:
    with pytest.raises(ValueError, match="cache Redis"):
        OperatorSettings.model_validate(operator_settings.model_dump()
                                        | {"events_redis_admin_url": operator_settings.redis_admin_url})
