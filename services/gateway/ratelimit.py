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
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from services.kit.errors import TooManyRequests

log = structlog.get_logger("flotilla.gateway.ratelimit")

KEY_PREFIX = "gateway:ratelimit"
STORAGE_ERRORS = (StorageError, RedisError, OSError, asyncio.TimeoutError)


def parse_limits(spec: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(spec)) if spec.strip() else ()


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
        if redis_url:
            self._pool = redis.asyncio.ConnectionPool.from_url(
                redis_url, socket_timeout=redis_timeout, socket_connect_timeout=redis_timeout, max_connections=64,
            )
            # Our own pool, handed to `limits`, so that shutdown can close it.
            options: dict[str, Any] = {"connection_pool": self._pool}
            storage = RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=KEY_PREFIX,
                                   wrap_exceptions=True, **options)
            self._redis = SlidingWindowCounterRateLimiter(storage)
        self.redis_retry_seconds = redis_retry_seconds
        self._redis_down_until = 0.0

    @property
    def backend(self) -> str:
        if self._redis is None:
            return "memory"
        return "memory-fallback" if time.monotonic() < self._redis_down_until else "redis"

    async def enforce(self, scope: str, key: str, items: Sequence[RateLimitItem]) -> None:
        """Count one request for ``key``; raise TooManyRequests if any limit is exceeded."""
        if not items:
            return
        exceeded = await self._hit(scope, key, items)
        if exceeded is not None:
            raise exceeded.error(scope)

    async def _hit(self, scope: str, key: str, items: Sequence[RateLimitItem]) -> Exceeded | None:
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                exceeded = await self._hit_on(self._redis, scope, key, items)
            except STORAGE_ERRORS as exc:
                if self._redis_down_until == 0.0:
                    log.warning("ratelimit_redis_unavailable", error_type=type(exc).__name__,
                                fallback="memory", retry_in_seconds=self.redis_retry_seconds)
                self._redis_down_until = time.monotonic() + self.redis_retry_seconds
            else:
                if self._redis_down_until:
                    log.info("ratelimit_redis_recovered")
                    self._redis_down_until = 0.0
                return exceeded
        return await self._hit_on(self._memory, scope, key, items)

    @staticmethod
    async def _hit_on(
        limiter: SlidingWindowCounterRateLimiter, scope: str, key: str, items: Sequence[RateLimitItem]
    ) -> Exceeded | None:
        for item in items:
            if not await limiter.hit(item, scope, key):
                stats = await limiter.get_window_stats(item, scope, key)
                return Exceeded(item, stats.reset_time)
        return None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
