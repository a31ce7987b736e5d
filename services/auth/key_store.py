"""The ``signing_keys`` table: generated keys for installs without ``AUTH_SIGNING_KEYS``."""

from __future__ import annotations

import zlib
from datetime import timedelta

from sqlalchemy import ColumnElement, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.key_material import new_key, to_pem
from services.auth.models import SigningKey
from services.kit.db import utcnow

_LOCK_KEY = zlib.crc32(b"flotilla-auth-signing-keys")


async def _serialise_key_changes(session: AsyncSession) -> None:
    # Two replicas starting together must not both generate "the first key", and two
    # rotations must not both retire each other's key: on PostgreSQL they take turns on
    # a transaction-scoped advisory lock. SQLite (embedded) is one process already.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _published() -> ColumnElement[bool]:
    return or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > utcnow())


async def published_signing_keys(session: AsyncSession) -> list[SigningKey]:
    """Keys still published, newest first; the first one not being retired signs."""
    rows = await session.scalars(
        select(SigningKey).where(_published()).order_by(
            SigningKey.retired_at.is_not(None), SigningKey.created_at.desc(), SigningKey.kid
        )
    )
    return list(rows)


def _insert_new_key(session: AsyncSession, algorithm: str) -> str:
    key = new_key(algorithm)
    session.add(SigningKey(kid=key.kid, algorithm=algorithm, private_key_pem=to_pem(key.private_key),
                           created_at=utcnow()))
    return key.kid


async def ensure_signing_key(*, session: AsyncSession, algorithm: str) -> None:
    """Generate the first signing key unless an active one exists (idempotent, race-safe)."""
    await _serialise_key_changes(session)
    active = await session.scalar(select(SigningKey.kid).where(SigningKey.retired_at.is_(None)).limit(1))
    if active is None:
        _insert_new_key(session, algorithm)
    await session.commit()


async def rotate_signing_key(*, session: AsyncSession, algorithm: str, retire_previous_after: timedelta) -> str:
    """Make a new key the signer; earlier keys stay published for ``retire_previous_after``.

    Returns the new key's kid. With a zero delay the earlier keys disappear at once,
    which invalidates every token they signed (the response to a leaked key).
    """
    await _serialise_key_changes(session)
    retire_at = utcnow() + retire_previous_after
    # Keys already on their way out keep the earlier of the two dates.
    await session.execute(
        update(SigningKey)
        .where(or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > retire_at))
        .values(retired_at=retire_at)
    )
    kid = _insert_new_key(session, algorithm)
    await session.commit()
    return kid
