"""argon2id password hashing (argon2-cffi), off the event loop.

A hash costs tens of milliseconds of CPU and ``memory_cost`` of RAM, so it runs in a
worker thread behind a limiter of its own: the event loop keeps serving other
requests, and a burst of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import secrets

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.auth.settings import AuthSettings


class Passwords:
    def __init__(self, settings: AuthSettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self._limiter = anyio.CapacityLimiter(settings.password_hash_concurrency)
        self._dummy_hash = ""

    async def start(self) -> None:
        # Verified against when the account does not exist, so an unknown email costs
        # the same time as a wrong password and response times do not reveal accounts.
        self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hasher.hash, password, limiter=self._limiter)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``stored_hash=None`` burns the same time and says no."""
        target = stored_hash if stored_hash is not None else self._dummy_hash
        try:
            matched = await anyio.to_thread.run_sync(self.hasher.verify, target, password, limiter=self._limiter)
        except (VerificationError, InvalidHashError):
            return False
        return matched and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        return self.hasher.check_needs_rehash(stored_hash)
