"""Cache-aside with TTL and O(1) invalidation, on Redis or in process.

Keys embed a per-namespace version (``<prefix>v:<namespace>``): a write bumps the
version, so every cached page of that namespace is skipped at once without scanning
keys, and a reader that raced the write stores its stale page under the old version,
where nobody looks. Redis being down is never an error for the caller: lookups miss,
stores are dropped, and the next successful contact bumps a global epoch so nothing
cached before the outage (when invalidations could not be written) is served after it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog
from cachetools import TTLCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.kit.metrics import ServiceMetrics

log = structlog.get_logger("flotilla.cache")


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: int) -> None: ...
    async def incr(self, key: str) -> int: ...
    async def get_ints(self, *keys: str) -> list[int]: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class MemoryBackend:
    """In-process backend for the embedded default (one process, no Redis)."""

    def __init__(self, maxsize: int = 50_000, ttl: int = 300) -> None:
        self._values: TTLCache[str, bytes] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._counters: dict[str, int] = {}

    async def get(self, key: str) -> bytes | None:
        return self._values.get(key)

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._values[key] = value

    async def incr(self, key: str) -> int:
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    async def get_ints(self, *keys: str) -> list[int]:
        return [self._counters.get(key, 0) for key in keys]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._values.clear()


class RedisBackend:
    def __init__(self, client: Redis) -> None:
        self.client = client

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(key)
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self.client.set(key, value, ex=ttl)

    async def incr(self, key: str) -> int:
        return int(await self.client.incr(key))

    async def get_ints(self, *keys: str) -> list[int]:
        # One round trip for the epoch and the namespace version.
        return [int(v) if v is not None else 0 for v in await self.client.mget(keys)]

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()


CACHE_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class Cache:
    """Versioned cache-aside over a backend; never raises to the request path."""

    def __init__(self, backend: CacheBackend, *, prefix: str, ttl: int, metrics: ServiceMetrics,
                 name: str = "default") -> None:
        self.backend = backend
        self.prefix = prefix
        self.ttl = ttl
        self.metrics = metrics
        self.name = name
        self._healthy = True
        self._invalidation_lost = False
        self._last_error_at = 0.0

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.metrics.cache_requests.labels(cache=self.name, result="error").inc()
        self.metrics.dependency_up.labels(dependency="redis").set(0)
        if self._healthy or time.monotonic() - self._last_error_at > 10:
            log.warning("cache_unavailable", operation=operation, error_type=type(exc).__name__)
            self._last_error_at = time.monotonic()
        self._healthy = False

    async def _recovered(self) -> None:
        if self._healthy:
            return
        if self._invalidation_lost:
            # An invalidation could not be written while Redis was away: pages cached
            # before it may be stale, so start a new epoch. (A failed lookup or store
            # alone cannot make anything stale, so it does not empty the cache.)
            await self.backend.incr(f"{self.prefix}epoch")
            self._invalidation_lost = False
        self._healthy = True
        self.metrics.dependency_up.labels(dependency="redis").set(1)
        log.info("cache_recovered")

    async def _versioned_key(self, namespace: str, key: str) -> str:
        epoch, version = await self.backend.get_ints(f"{self.prefix}epoch", f"{self.prefix}v:{namespace}")
        return f"{self.prefix}{namespace}:{epoch}.{version}:{key}"

    async def lookup(self, namespace: str, key: str) -> tuple[bytes | None, str | None]:
        """Return (cached value or None, the key to store the fresh value under or None)."""
        try:
            await self._recovered()
            full_key = await self._versioned_key(namespace, key)
            value = await self.backend.get(full_key)
        except CACHE_ERRORS as exc:
            self._failed("get", exc)
            return None, None
        self.metrics.cache_requests.labels(cache=self.name, result="hit" if value is not None else "miss").inc()
        return value, full_key

    async def store(self, full_key: str | None, value: bytes) -> None:
        if full_key is None:
            return
        try:
            await self.backend.set(full_key, value, self.ttl)
        except CACHE_ERRORS as exc:
            self._failed("set", exc)

    async def invalidate(self, namespace: str) -> None:
        try:
            await self.backend.incr(f"{self.prefix}v:{namespace}")
        except CACHE_ERRORS as exc:
            self._invalidation_lost = True
            self._failed("invalidate", exc)

    async def check(self) -> None:
        """Health check: raises when the backend is unreachable."""
        try:
            await self.backend.ping()
        except CACHE_ERRORS as exc:
            self._failed("ping", exc)
            raise
        await self._recovered()

    async def close(self) -> None:
        await self.backend.close()


def redis_client(url: str, *, timeout: float) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        max_connections=64,
    )
