"""Login brute-force limits, per account and per client address (the ``limits`` library).

Every attempt reserves a unit *before* the password is checked: a check-then-count
limiter lets a burst of parallel guesses all pass the check before any of them is
counted. A successful login hands the account's units back (clears its window), so
in effect the account budget counts failures; the address budget counts attempts.

With Redis the windows are shared by every replica (keys under ``auth:``, which is
what the operator's Redis ACL allows). When Redis is unreachable the limiter falls
back to an in-process window instead of failing logins or letting them through
unlimited.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from services.auth.settings import AuthSettings
from services.kit.errors import TooManyRequests

log = structlog.get_logger("flotilla.auth.throttle")

STORAGE_ERRORS = (StorageError, RedisError, OSError, asyncio.TimeoutError)
#: ``limits`` writes ``<prefix>:<key>``; the service's own namespace comes first.
KEY_PREFIX = "auth:login-limits"
RETRY_SHARED_AFTER_SECONDS = 5.0


def _limits_uri(redis_url: str) -> str:
    # limits picks its async Redis storage from an ``async+`` scheme.
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class LoginThrottle:
    def __init__(self, settings: AuthSettings) -> None:
        self.per_account: RateLimitItem = parse(settings.login_limit_per_account)
        self.per_ip: RateLimitItem = parse(settings.login_limit_per_ip)
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self._pool: ConnectionPool | None = None
        self._shared: MovingWindowRateLimiter | None = None
        self._healthy = True
        self._retry_shared_at = 0.0
        redis_url = settings.redis_url.get_secret_value()
        if redis_url:
            self._pool = ConnectionPool.from_url(
                redis_url,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
                max_connections=32,
            )
            # implementation="redispy": the redis client the kit already depends on (limits
            # defaults to coredis, which would be one more client library).
            storage = RedisStorage(_limits_uri(redis_url), implementation="redispy", key_prefix=KEY_PREFIX,
                                   wrap_exceptions=True,
                                   connection_pool=self._pool)  # type: ignore[arg-type]  # passed through to redis-py
            self._shared = MovingWindowRateLimiter(storage)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    def _shared_usable(self) -> MovingWindowRateLimiter | None:
        if self._shared is not None and (self._healthy or time.monotonic() >= self._retry_shared_at):
            return self._shared
        return None

    def _unavailable(self, exc: BaseException) -> None:
        if self._healthy:
            log.warning("login_limits_storage_unavailable", error_type=type(exc).__name__,
                        fallback="in-process windows")
        self._healthy = False
        # Back off, so that an outage does not add a Redis timeout to every login.
        self._retry_shared_at = time.monotonic() + RETRY_SHARED_AFTER_SECONDS

    async def _hit(self, item: RateLimitItem, *identifiers: str) -> tuple[bool, MovingWindowRateLimiter]:
        if (shared := self._shared_usable()) is not None:
            try:
                allowed = await shared.hit(item, *identifiers)
            except STORAGE_ERRORS as exc:
                self._unavailable(exc)
            else:
                if not self._healthy:
                    log.info("login_limits_storage_recovered")
                    self._healthy = True
                return allowed, shared
        return await self._fallback.hit(item, *identifiers), self._fallback

    @staticmethod
    async def _retry_after(limiter: MovingWindowRateLimiter, item: RateLimitItem, *identifiers: str) -> int:
        try:
            stats = await limiter.get_window_stats(item, *identifiers)
        except STORAGE_ERRORS:
            return item.get_expiry()
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def attempt(self, *, email: str, client: str) -> None:
        """Reserve one login attempt, or raise 429 with Retry-After when a budget is spent."""
        await self._spend(((self.per_account, "account", _account_key(email)), (self.per_ip, "client", client)))

    async def registration(self, *, client: str) -> None:
        """Reserve one registration from ``client``: the same per-address budget as logins.

        A registration costs a password hash like a login does, and a flood of them from
        one address would otherwise be unlimited (and fills the hashing queue everyone
        shares).
        """
        await self._spend(((self.per_ip, "client", client),))

    async def _spend(self, budgets: tuple[tuple[RateLimitItem, str, str], ...]) -> None:
        for item, scope, identifier in budgets:
            allowed, limiter = await self._hit(item, f"login-{scope}", identifier)
            if not allowed:
                retry_after = await self._retry_after(limiter, item, f"login-{scope}", identifier)
                log.info("login_throttled", scope=scope, key=identifier, retry_after=retry_after)
                raise TooManyRequests("too many login attempts; retry later", retry_after=retry_after,
                                      details={"scope": scope})

    async def succeeded(self, *, email: str) -> None:
        """The right password: the attempts against this account no longer count."""
        key = _account_key(email)
        for limiter in (self._shared_usable(), self._fallback):
            if limiter is None:
                continue
            try:
                await limiter.clear(self.per_account, "login-account", key)
            except STORAGE_ERRORS as exc:
                self._unavailable(exc)


def _account_key(email: str) -> str:
    # Hashed: the limiter's keys sit in a shared Redis, which need not learn the emails.
    return hashlib.sha256(email.encode()).hexdigest()[:32]
