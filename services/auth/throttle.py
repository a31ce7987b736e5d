"""Login brute-force limits (the ``limits`` library), after OWASP's Authentication Cheat Sheet.

Three budgets, spent narrowest first:

- per client address (``client``): every login and registration attempt from it;
- per account and client address (``account_client``): the tight one. Failures from an
  attacker's address spend only that address's budget for the account, so they never
  lock the owner out from anywhere else;
- per account across all addresses (``account``): the slow one, against guessing from
  many addresses. It is the one budget an attacker can spend for the owner: once
  exhausted, the owner's own correct password waits for it too. That is the accepted
  trade-off (a delay, never a lockout that renews without end from one address), and
  why it is set above what one address may spend of it.

Every attempt reserves its units *before* the password is checked: a check-then-count
limiter lets a burst of parallel guesses all pass the check before any of them is
counted. Narrowest first, so an attempt refused by its address's budgets never spends
the account's. A successful login hands the account's units back (clears its windows),
so in effect the account budgets count failures; the address budget counts attempts.

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
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse_many
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


@dataclass(frozen=True)
class Budget:
    """One budget: its windows, and the scope a 429 names (``details.scope``)."""

    scope: str
    windows: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, scope: str, spec: str) -> Budget:
        return cls(scope, tuple(parse_many(spec)))


class LoginThrottle:
    def __init__(self, settings: AuthSettings) -> None:
        self.per_ip = Budget.parse("client", settings.login_limit_per_ip)
        self.per_account_and_ip = Budget.parse("account_client", settings.login_limit_per_account_and_ip)
        self.per_account = Budget.parse("account", settings.login_limit_per_account)
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
        account = _account_key(email)
        await self._spend(((self.per_ip, (client,)), (self.per_account_and_ip, (account, client)),
                           (self.per_account, (account,))))

    async def registration(self, *, client: str) -> None:
        """Reserve one registration from ``client``: the same per-address budget as logins.

        A registration costs a password hash like a login does, and a flood of them from
        one address would otherwise be unlimited (and fills the hashing queue everyone
        shares).
        """
        await self._spend(((self.per_ip, (client,)),))

    async def _spend(self, budgets: Sequence[tuple[Budget, tuple[str, ...]]]) -> None:
        for budget, identifiers in budgets:
            for window in budget.windows:
                allowed, limiter = await self._hit(window, f"login-{budget.scope}", *identifiers)
                if not allowed:
                    retry_after = await self._retry_after(limiter, window, f"login-{budget.scope}", *identifiers)
                    log.info("login_throttled", scope=budget.scope, key="/".join(identifiers),
                             retry_after=retry_after)
                    raise TooManyRequests("too many login attempts; retry later", retry_after=retry_after,
                                          details={"scope": budget.scope})

    async def succeeded(self, *, email: str, client: str) -> None:
        """The right password: the failures against this account no longer count.

        Clears the account's budget and its budget at this address; what other addresses
        spent at this account stays theirs (their keys are not known here, and need not be:
        they never stood in the owner's way).
        """
        account = _account_key(email)
        spent = ((self.per_account, (account,)), (self.per_account_and_ip, (account, client)))
        for limiter in (self._shared_usable(), self._fallback):
            if limiter is None:
                continue
            try:
                for budget, identifiers in spent:
                    for window in budget.windows:
                        await limiter.clear(window, f"login-{budget.scope}", *identifiers)
            except STORAGE_ERRORS as exc:
                self._unavailable(exc)


def _account_key(email: str) -> str:
    # Hashed: the limiter's keys sit in a shared Redis, which need not learn the emails.
    return hashlib.sha256(email.encode()).hexdigest()[:32]
