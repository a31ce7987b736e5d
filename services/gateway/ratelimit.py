"""Edge rate limits per user and per client IP, with `limits` (sliding window counter).

Sliding window counter: a fixed window lets a client send twice the limit across a
window boundary; the exact moving window keeps one entry per request and, in process,
costs about four times the CPU per request once there are a few hundred keys
(measured with `limits` 5.8); the sliding counter weighs the previous window's count
and costs two counters per key, in Redis and in memory alike.

With Redis configured the counters are shared by every gateway replica (keys under
``gateway:ratelimit:``, inside a Redis ACL limited to ``gateway:*``; `limits` uses
redis-py's asyncio client here, so no second Redis library). If Redis fails, limits
are enforced per process until Redis answers again: a Redis outage must never turn
into refused or failed requests.

X-RateLimit-* headers come with the 429 only: on every response they would cost one
more storage round trip per limit per request.

Every limit a request is subject to (per address, per user) is counted in one Redis
round trip: `limits` runs one Lua script per limit, so two limits were two round trips
on every proxied request (about a seventh of the gateway's CPU). ``_ACQUIRE_ALL`` runs
`limits`' own sliding-window script (its text, from the package) once per limit inside
one script, on the keys `limits` itself uses, so the algorithm and the stored counters
stay the library's: its window statistics (for Retry-After) read what we wrote.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.storage.redis.bridge import RedisBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from services.kit.errors import TooManyRequests
from services.kit.lua import BatchedLuaScript

log = structlog.get_logger("flotilla.gateway.ratelimit")

KEY_PREFIX = "gateway:ratelimit"
STORAGE_ERRORS = (StorageError, RedisError, OSError, asyncio.TimeoutError)


def parse_limits(spec: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(spec)) if spec.strip() else ()


#: Each limit: KEYS[2i-1], KEYS[2i] = previous and current window; ARGV[3i-2..3i] = limit,
#: expiry seconds, cost. Stops at the first limit exceeded and returns its number (0: none).
#: As with separate calls, limits before the exceeded one keep their hit.
_ACQUIRE_ALL = (
    "local function acquire(KEYS, ARGV)\n"
    + RedisBridge.SCRIPT_ACQUIRE_SLIDING_WINDOW.decode()
    + "\nend\n"
    + """
for i = 1, #KEYS / 2 do
  if not acquire({KEYS[2 * i - 1], KEYS[2 * i]}, {ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]}) then
    return i
  end
end
return 0
"""
)


@dataclass(frozen=True, slots=True)
class Check:
    """The limits one client identity is held to: ``scope`` "ip" or "user", and its key."""

    scope: str
    key: str
    items: Sequence[RateLimitItem]


@dataclass(frozen=True, slots=True)
class Exceeded:
    limit: RateLimitItem
    reset_at: float

    def error(self, scope: str) -> TooManyRequests:
        retry_after = max(1, math.ceil(self.reset_at - time.time()))
        return TooManyRequests(
            f"rate limit of {self.limit} per {scope} exceeded; retry later",
            retry_after=retry_after,
            details={"limit": str(self.limit), "scope": scope},
            headers={
                "Retry-After": str(retry_after),
                "X-RateLimit-Limit": str(self.limit.amount),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
            },
        )


class EdgeRateLimiter:
    def __init__(self, *, redis_url: str = "", redis_timeout: float = 0.5, redis_retry_seconds: float = 5.0) -> None:
        # Built inside the running loop: the in-memory storage schedules its expiry task.
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._pool: redis.asyncio.ConnectionPool | None = None
        self._redis: SlidingWindowCounterRateLimiter | None = None
        self._acquire_all: BatchedLuaScript | None = None
        if redis_url:
            # No socket_timeout: redis-py would wrap every write in a task (asyncio.wait_for);
            # _hit puts one asyncio.timeout around the whole Redis exchange instead.
            self._pool = redis.asyncio.ConnectionPool.from_url(
                redis_url, socket_timeout=None, socket_connect_timeout=redis_timeout, max_connections=64,
            )
            # Our own pool, handed to `limits`, so that shutdown can close it.
            options: dict[str, Any] = {"connection_pool": self._pool}
            storage = RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=KEY_PREFIX,
                                   wrap_exceptions=True, **options)
            self._redis = SlidingWindowCounterRateLimiter(storage)
            # Every proxied request runs it: concurrent requests' limits share a round trip.
            self._acquire_all = BatchedLuaScript(redis.asyncio.Redis(connection_pool=self._pool), _ACQUIRE_ALL,
                                                 timeout=redis_timeout)
        self.redis_retry_seconds = redis_retry_seconds
        self.redis_timeout = redis_timeout
        self._redis_down_until = 0.0

    @property
    def backend(self) -> str:
        if self._redis is None:
            return "memory"
        return "memory-fallback" if time.monotonic() < self._redis_down_until else "redis"

    async def enforce(self, *checks: Check) -> None:
        """Count one request against every check; raise TooManyRequests at the first exceeded."""
        checks = tuple(c for c in checks if c.items)
        if not checks:
            return
        found = await self._hit(checks)
        if found is not None:
            scope, exceeded = found
            raise exceeded.error(scope)

    async def _hit(self, checks: Sequence[Check]) -> tuple[str, Exceeded] | None:
        if self._redis is not None and self._acquire_all is not None and time.monotonic() >= self._redis_down_until:
            try:
                async with asyncio.timeout(self.redis_timeout):
                    found = await self._hit_redis(self._redis, self._acquire_all, checks)
            except STORAGE_ERRORS as exc:
                if self._redis_down_until == 0.0:
                    log.warning("ratelimit_redis_unavailable", error_type=type(exc).__name__,
                                fallback="memory", retry_in_seconds=self.redis_retry_seconds)
                self._redis_down_until = time.monotonic() + self.redis_retry_seconds
            else:
                if self._redis_down_until:
                    log.info("ratelimit_redis_recovered")
                    self._redis_down_until = 0.0
                return found
        return await self._hit_memory(self._memory, checks)

    @staticmethod
    async def _hit_redis(limiter: SlidingWindowCounterRateLimiter, acquire_all: BatchedLuaScript,
                         checks: Sequence[Check]) -> tuple[str, Exceeded] | None:
        pairs = [(check, item) for check in checks for item in check.items]
        keys: list[str] = []
        args: list[int] = []
        for check, item in pairs:
            # The keys `limits`' RedisStorage uses for this item (prefix, {key}, {key}/-1).
            current = f"{KEY_PREFIX}:{{{item.key_for(check.scope, check.key)}}}"
            keys += [f"{current}/-1", current]
            args += [item.amount, item.get_expiry(), 1]
        try:
            exceeded_at = int(await acquire_all(keys=keys, args=args))
        except RedisError as exc:
            raise StorageError(exc) from exc
        if not exceeded_at:
            return None
        check, item = pairs[exceeded_at - 1]
        stats = await limiter.get_window_stats(item, check.scope, check.key)
        return check.scope, Exceeded(item, stats.reset_time)

    @staticmethod
    async def _hit_memory(limiter: SlidingWindowCounterRateLimiter,
                          checks: Sequence[Check]) -> tuple[str, Exceeded] | None:
        for check in checks:
            for item in check.items:
                if not await limiter.hit(item, check.scope, check.key):
                    stats = await limiter.get_window_stats(item, check.scope, check.key)
                    return check.scope, Exceeded(item, stats.reset_time)
        return None

    async def close(self) -> None:
        if self._acquire_all is not None:
            await self._acquire_all.close()
        if self._pool is not None:
            await self._pool.aclose()
