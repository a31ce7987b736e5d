"""argon2id password hashing (argon2-cffi), off the event loop.

A hash costs tens of milliseconds of CPU and ``memory_cost`` of RAM, so it runs in a
worker thread behind a limiter of its own: the event loop keeps serving other
requests (argon2-cffi releases the GIL while hashing), and a burst of logins queues
instead of exhausting memory. The queue is bounded: past ``password_hash_queue``
waiting hashes a request is refused at once with 503 + Retry-After (``Overloaded``),
so a burst costs the excess clients a fast retry instead of costing everyone a
time-out, and the work admitted always finishes well within the gateway's deadline.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.auth.settings import AuthSettings
from services.kit.errors import Overloaded

T = TypeVar("T")


class Passwords:
    def __init__(self, settings: AuthSettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self._limiter = anyio.CapacityLimiter(settings.password_hash_concurrency)
        self._admitted_max = settings.password_hash_concurrency + settings.password_hash_queue
        self._admitted = 0
        self._dummy_hash = ""

    async def start(self) -> None:
        # Verified against when the account does not exist, so an unknown email costs
        # the same time as a wrong password and response times do not reveal accounts.
        self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        if self._admitted >= self._admitted_max:
            raise Overloaded("password hashing")
        self._admitted += 1
        try:
            return await anyio.to_thread.run_sync(work, *args, limiter=self._limiter)
        finally:
            self._admitted -= 1

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``stored_hash=None`` burns the same time and says no."""
        target = stored_hash if stored_hash is not None else self._dummy_hash
        try:
            matched = await self._run(self.hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return matched and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        return self.hasher.check_needs_rehash(stored_hash)
