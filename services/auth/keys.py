"""The signing keys one replica signs with and publishes as JWKS.

Keys come from ``AUTH_SIGNING_KEYS`` (a private JWKS from a Secret; rotation = update
the Secret, listing the old key second, and roll the pods) or, without it, from auth's
``signing_keys`` table, where the first start generates one and
:meth:`KeyRing.rotate` / :func:`services.auth.key_store.rotate_signing_key` add more.
The newest key signs; every key not yet retired is published, so the tokens a key
signed keep verifying after the rotation that supersedes it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import structlog

from services.auth import key_store
from services.auth.key_material import LoadedKey, from_pem, keys_from_private_jwks
from services.auth.settings import AuthSettings
from services.kit.db import Database
from services.kit.security import LEEWAY_SECONDS

log = structlog.get_logger("flotilla.auth.keys")


def retirement_delay(settings: AuthSettings) -> timedelta:
    """How long a superseded key stays published: until every token it signed has expired.

    Another replica may go on signing with it until it next re-reads the table, so
    that interval counts too, plus the verifiers' clock leeway.
    """
    return timedelta(seconds=settings.access_token_ttl_seconds + settings.signing_keys_refresh_seconds
                     + 2 * LEEWAY_SECONDS)


class KeyRing:
    def __init__(self, settings: AuthSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.from_secret = bool(settings.signing_keys.get_secret_value())
        self._keys: list[LoadedKey] = []  # the signer first
        self._parsed: dict[str, LoadedKey] = {}
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self.from_secret:
            self._keys = keys_from_private_jwks(self.settings.signing_keys.get_secret_value())
        else:
            async with self.db.session() as session:
                await key_store.ensure_signing_key(session=session, algorithm=self.settings.signing_algorithm)
            await self.reload()
        log.info("signing_keys_loaded", source="secret" if self.from_secret else "database",
                 kids=[key.kid for key in self._keys])

    async def reload(self) -> None:
        async with self.db.session() as session:
            rows = await key_store.published_signing_keys(session)
        keys = []
        for row in rows:
            if row.kid not in self._parsed:
                self._parsed[row.kid] = from_pem(row.kid, row.algorithm, row.private_key_pem)
            keys.append(self._parsed[row.kid])
        if not keys:
            raise RuntimeError("no signing key is active; rotate_signing_key() creates one")
        self._keys = keys
        self._loaded_at = time.monotonic()

    async def refresh(self, max_age_seconds: float) -> None:
        """Re-read the table when the copy in memory is older than ``max_age_seconds``.

        Keeps the current keys when the database is unreachable: signing with a key
        that was valid a moment ago beats failing every login.
        """
        if self.from_secret or time.monotonic() - self._loaded_at < max_age_seconds:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < max_age_seconds:
                return
            try:
                await self.reload()
            except Exception as exc:  # whatever the database raised, the keys in hand still work
                log.warning("signing_keys_reload_failed", error_type=type(exc).__name__)
                self._loaded_at = time.monotonic()

    async def rotate(self) -> str:
        """Make a new key the signer; the previous ones stay published until their tokens expire."""
        if self.from_secret:
            raise RuntimeError("keys come from AUTH_SIGNING_KEYS: rotate by updating that Secret")
        async with self.db.session() as session:
            kid = await key_store.rotate_signing_key(session=session, algorithm=self.settings.signing_algorithm,
                                                     retire_previous_after=retirement_delay(self.settings))
        await self.reload()
        return kid

    @property
    def signer(self) -> LoadedKey:
        return self._keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._keys]}
