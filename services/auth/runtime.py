"""What the auth routes share beyond the kit: keys, hasher, login limits.

Built by a worker once the database is migrated (the key ring may need to create its
first key), kept on ``kit.extras``, and reached by routes through ``deps``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

from services.auth.keys import KeyRing
from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle
from services.kit.app import Kit

EXTRAS_KEY = "auth"


@dataclass(frozen=True, slots=True)
class AuthRuntime:
    settings: AuthSettings
    keys: KeyRing
    passwords: Passwords
    throttle: LoginThrottle


def auth_runtime(kit: Kit) -> AuthRuntime:
    return cast(AuthRuntime, kit.extras[EXTRAS_KEY])


@asynccontextmanager
async def start_auth_runtime(kit: Kit) -> AsyncIterator[None]:
    settings = cast(AuthSettings, kit.settings)
    keys = KeyRing(settings, kit.database)
    await keys.start()
    passwords = Passwords(settings)
    await passwords.start()
    throttle = LoginThrottle(settings)
    kit.extras[EXTRAS_KEY] = AuthRuntime(settings=settings, keys=keys, passwords=passwords, throttle=throttle)
    try:
        yield
    finally:
        await throttle.close()
