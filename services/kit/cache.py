"""Cache-aside with TTL and O(1) invalidation, on Redis or in process.

Keys embed a per-namespace version (``<prefix>v:<namespace>``): a write bumps the
version, so every cached page of that namespace is skipped at once without scanning
keys, and a reader that raced the write stores its stale page under the old version,
where nobody looks. Redis being down is never an error for the caller: lookups miss,
stores are dropped, and the next successful contact bumps a global epoch so nothing
cached before the outage (when invalidations could not be written) is served after it.

A lookup is one round trip (a Lua script reads epoch, version and the page), and a
writer that knows the page's new content replaces it instead of invalidating it
(``invalidate(..., replacement=...)``): the version is bumped and the new page stored
under it in one atomic step, but only if nobody bumped the version since the writer's
lookup, so two concurrent writers can never store a page that misses the other's write.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import structlog
from cachetools import TTLCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.kit.lua import BatchedLuaScript, LuaScript
from services.kit.metrics import ServiceMetrics

log = structlog.get_logger("flotilla.cache")


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one lookup's page lives: namespace version and epoch as read at lookup time."""

    namespace: str
    key: str
    epoch: int
    version: int

    def full_key(self, prefix: str) -> str:
        return f"{prefix}{self.namespace}:{self.epoch}.{self.version}:{self.key}"


class CacheBackend(Protocol):
    async def lookup(self, epoch_key: str, version_key: str, head: str, tail: str) -> tuple[int, int, bytes | None]:
        """(epoch, version, value of ``head + f"{epoch}.{version}" + tail``) in one step."""
        ...

    async def set(self, key: str, value: bytes, ttl: int) -> None: ...
    async def incr(self, key: str) -> int: ...

    async def incr_and_set_if(self, version_key: str, expected: int, head: str, tail: str,
                              value: bytes, ttl: int) -> int:
        """Bump the version; if it was ``expected``, store ``value`` under the new one. Atomic."""
        ...

    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first caller per ``ttl`` seconds (SET NX EX): one replica does the work."""
        ...

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class NoBackend:
    """The cache turned off (``CACHE_ENABLED=false``): nothing is ever found or kept."""

    async def lookup(self, epoch_key: str, version_key: str, head: str, tail: str) -> tuple[int, int, bytes | None]:
        return 0, 0, None

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        return None

    async def incr(self, key: str) -> int:
        return 0

    async def incr_and_set_if(self, version_key: str, expected: int, head: str, tail: str,
                              value: bytes, ttl: int) -> int:
        return 0

    async def claim(self, key: str, ttl: float) -> bool:
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryBackend:
    """In-process backend for the embedded default (one process, no Redis).

    Each method runs without an ``await`` in between, so it is atomic on the event loop.
    """

    def __init__(self, maxsize: int = 50_000, ttl: int = 300) -> None:
        self._values: TTLCache[str, bytes] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._counters: dict[str, int] = {}
        self._claims: dict[str, float] = {}

    async def lookup(self, epoch_key: str, version_key: str, head: str, tail: str) -> tuple[int, int, bytes | None]:
        epoch, version = self._counters.get(epoch_key, 0), self._counters.get(version_key, 0)
        return epoch, version, self._values.get(f"{head}{epoch}.{version}{tail}")

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._values[key] = value

    async def incr(self, key: str) -> int:
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    async def incr_and_set_if(self, version_key: str, expected: int, head: str, tail: str,
                              value: bytes, ttl: int) -> int:
        version = await self.incr(version_key)
        if version == expected + 1:
            self._values[f"{head}{version}{tail}"] = value
        return version

    async def claim(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        if self._claims.get(key, 0.0) > now:
            return False
        self._claims[key] = now + ttl
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._values.clear()


# Keys are built inside the scripts from KEYS[1..2] and a prefix: fine on one Redis (the
# service's ACL still limits every key to its prefix), not meant for Redis Cluster.
_LOOKUP_SCRIPT = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local version = redis.call('GET', KEYS[2]) or '0'
return {epoch, version, redis.call('GET', ARGV[1] .. epoch .. '.' .. version .. ARGV[2])}
"""
_REPLACE_SCRIPT = """
local version = redis.call('INCR', KEYS[1])
if version == tonumber(ARGV[1]) + 1 then
  redis.call('SET', ARGV[2] .. version .. ARGV[3], ARGV[4], 'EX', ARGV[5])
end
return version
"""


class RedisBackend:
    """Redis with a deadline per operation.

    The deadline is an ``asyncio.timeout`` around each call rather than redis-py's
    ``socket_timeout``: that one wraps every socket write in ``asyncio.wait_for``, a new
    task per command (~5 % of a cached read's CPU). A call cut short by the deadline
    makes redis-py drop that connection, so no half-read reply is ever reused.
    """

    def __init__(self, client: Redis, *, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        # Every cached read runs it: concurrent lookups share a round trip.
        self._lookup = BatchedLuaScript(client, _LOOKUP_SCRIPT, timeout=timeout)
        self._replace = LuaScript(client, _REPLACE_SCRIPT)

    async def lookup(self, epoch_key: str, version_key: str, head: str, tail: str) -> tuple[int, int, bytes | None]:
        async with asyncio.timeout(self.timeout):
            epoch, version, value = await self._lookup(keys=[epoch_key, version_key], args=[head, tail])
        return int(epoch), int(version), value

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        async with asyncio.timeout(self.timeout):
            await self.client.set(key, value, ex=ttl)

    async def incr(self, key: str) -> int:
        async with asyncio.timeout(self.timeout):
            return int(await self.client.incr(key))

    async def incr_and_set_if(self, version_key: str, expected: int, head: str, tail: str,
                              value: bytes, ttl: int) -> int:
        async with asyncio.timeout(self.timeout):
            return int(await self._replace(keys=[version_key], args=[expected, head, tail, value, ttl]))

    async def claim(self, key: str, ttl: float) -> bool:
        async with asyncio.timeout(self.timeout):
            return bool(await self.client.set(key, b"1", nx=True, px=max(1, int(ttl * 1000))))

    async def ping(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self.client.ping()

    async def close(self) -> None:
        await self._lookup.close()
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
        results = metrics.cache_requests
        self._hit, self._miss, self._error = (results.labels(cache=name, result=r) for r in ("hit", "miss", "error"))

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._error.inc()
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

    def _version_key(self, namespace: str) -> str:
        return f"{self.prefix}v:{namespace}"

    async def lookup(self, namespace: str, key: str) -> tuple[bytes | None, Slot | None]:
        """Return (cached value or None, the slot to store the fresh value in, or None)."""
        try:
            await self._recovered()
            epoch, version, value = await self.backend.lookup(
                f"{self.prefix}epoch", self._version_key(namespace), f"{self.prefix}{namespace}:", f":{key}")
        except CACHE_ERRORS as exc:
            self._failed("get", exc)
            return None, None
        (self._hit if value is not None else self._miss).inc()
        return value, Slot(namespace, key, epoch, version)

    async def store(self, slot: Slot | None, value: bytes) -> None:
        if slot is None:
            return
        try:
            await self.backend.set(slot.full_key(self.prefix), value, self.ttl)
        except CACHE_ERRORS as exc:
            self._failed("set", exc)

    async def invalidate(self, namespace: str, *, replacement: tuple[Slot, bytes] | None = None) -> None:
        """Drop every cached value of ``namespace`` after a write.

        ``replacement``: the slot of an earlier lookup in this namespace and its value
        after the write. It is stored under the new version, unless another write
        bumped the version since that lookup (then the namespace is only invalidated).
        """
        version_key = self._version_key(namespace)
        try:
            if replacement is None:
                await self.backend.incr(version_key)
            else:
                slot, value = replacement
                await self.backend.incr_and_set_if(version_key, slot.version, f"{self.prefix}{namespace}:{slot.epoch}.",
                                                   f":{slot.key}", value, self.ttl)
        except CACHE_ERRORS as exc:
            self._invalidation_lost = True
            self._failed("invalidate", exc)

    async def claim(self, name: str, ttl: float) -> bool:
        """Whether this caller should do the periodic job ``name`` now (first per ``ttl`` seconds).

        Shared through Redis, so of many replicas one does it; False when Redis is down
        (whatever the job would store could not be stored either).
        """
        try:
            return await self.backend.claim(f"{self.prefix}claim:{name}", ttl)
        except CACHE_ERRORS as exc:
            self._failed("claim", exc)
            return False

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


def redis_client(url: str, *, timeout: float | None) -> Redis:
    """A pooled client. ``timeout=None``: no socket timeout; the caller sets deadlines."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout if timeout is not None else 5.0,
        health_check_interval=30,
        max_connections=64,
    )
