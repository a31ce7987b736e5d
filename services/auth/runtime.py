"""What the auth routes share beyond the kit: keys, hasher, login limits.

Built by a worker once the database is migrated (the key ring may need to create its
first key), kept on ``kit.runtime``, and reached by routes through ``deps``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import structlog

from services.auth.crud import purge_expired_refresh_tokens
from services.auth.keys import KeyRing
from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle
from services.kit.app import Kit
from services.kit.db import utcnow
from services.kit.loops import ServiceLoop

log = structlog.get_logger("flotilla.auth")

#: How often expired refresh tokens are purged, and how long past expiry rows are kept
#: (a day of slack so clock skew between replicas never matters).
PURGE_INTERVAL_SECONDS = 3600.0
PURGE_AFTER_EXPIRY = timedelta(days=1)
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class AuthRuntime:
    settings: AuthSettings
    keys: KeyRing
    passwords: Passwords
    throttle: LoginThrottle


def auth_runtime(kit: Kit) -> AuthRuntime:
    return kit.runtime_as(AuthRuntime)


def refresh_token_purger(kit: Kit) -> Callable[[], Awaitable[bool]]:
    async def purge() -> bool:
        async with kit.database.session() as session, session.begin():
            purged = await purge_expired_refresh_tokens(session=session, expired_before=utcnow() - PURGE_AFTER_EXPIRY)
        if purged:
            log.info("expired_refresh_tokens_purged", count=purged)
        return False

    return purge


@asynccontextmanager
async def start_auth_runtime(kit: Kit) -> AsyncIterator[None]:
    settings = cast(AuthSettings, kit.settings)
    keys = KeyRing(settings, kit.database)
    await keys.start()
    passwords = Passwords(settings)
    await passwords.start()
    throttle = LoginThrottle(settings)
    kit.runtime = AuthRuntime(settings=settings, keys=keys, passwords=passwords, throttle=throttle)
    purger = ServiceLoop("refresh-token-purge", refresh_token_purger(kit),
                         idle_seconds=PURGE_INTERVAL_SECONDS, backoff_max_seconds=PURGE_INTERVAL_SECONDS)
    try:
        async with purger.running(grace_seconds=STOP_GRACE_SECONDS):
            yield
    finally:
        await throttle.close()
