"""Lua scripts survive a Redis that forgot them (restart, SCRIPT FLUSH, failover); batched calls
answer each caller as separate calls would."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.kit.lua import BatchedLuaScript, LuaScript
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


async def test_concurrent_calls_share_round_trips_and_each_gets_its_own_answer(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    # INCR then read back: evaluated in call order, like separate calls one after another.
    script = BatchedLuaScript(client, "local n = redis.call('INCR', KEYS[1])\n"
                                      "if ARGV[1] == 'nil' then return nil end\n"
                                      "if ARGV[1] == 'false' then return false end\n"
                                      "return {n, ARGV[1]}", timeout=5)
    try:
        await client.config_resetstat()
        answers = await asyncio.gather(*(script(keys=["counter"], args=[str(i)]) for i in range(50)))
        assert sorted(int(n) for n, _ in answers) == list(range(1, 51))
        assert all(arg == str(i).encode() for i, (_, arg) in enumerate(answers))
        calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
        assert calls < 50  # the first call goes alone; the other 49 share what follows
        # A bare false or nil answer is an answer, and does not cut the batch short.
        assert await asyncio.gather(script(keys=["c"], args=["nil"]), script(keys=["c"], args=["false"]),
                                    script(keys=["c"], args=["x"])) == [None, None, [3, b"x"]]
    finally:
        await script.close()
        await client.aclose()


async def test_a_failed_batch_fails_each_call_in_it(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    script = BatchedLuaScript(client, "return redis.call('INCR', KEYS[1])", timeout=5)
    try:
        await client.set("text", "not a number")
        results = await asyncio.gather(script(keys=["ok"], args=[]), script(keys=["text"], args=[]),
                                       return_exceptions=True)
        assert all(isinstance(result, ResponseError) for result in results)  # one script error fails its batch
        assert await script(keys=["ok"], args=[]) in {1, 2}  # and the next batch is sent as usual
    finally:
        await script.close()
        await client.aclose()
