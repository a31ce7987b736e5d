"""Lua scripts survive a Redis that forgot them (restart, SCRIPT FLUSH, failover)."""

from __future__ import annotations

from redis.asyncio import Redis

from services.kit.lua import LuaScript
from tests.support.servers import RedisServer


async def test_script_is_loaded_again_after_the_server_forgets_it(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        script = LuaScript(client, "return {KEYS[1], ARGV[1]}")
        assert await script(keys=["k"], args=["a"]) == [b"k", b"a"]
        await client.script_flush()
        assert await script(keys=["k2"], args=[2]) == [b"k2", b"2"]
        assert await client.script_exists(script.sha) == [True]
    finally:
        await client.aclose()
