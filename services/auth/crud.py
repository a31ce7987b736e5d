"""Persistence of accounts and refresh tokens (signing keys: see key_store)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import RefreshToken, User
from services.auth.tokens import hash_refresh_token, new_refresh_token
from services.kit.db import utcnow
from services.kit.errors import Conflict, Unauthorized

log = structlog.get_logger("flotilla.auth.crud")

INVALID_REFRESH_TOKEN = "invalid or expired refresh token"  # noqa: S105 (a message, not a secret)


async def get_user_by_email(*, session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def release_connection(session: AsyncSession, *keep: User | None) -> None:
    """End the read so the pooled connection goes back while slow work (hashing) runs.

    A hash takes tens of milliseconds and queues under a burst; holding a connection
    meanwhile would make the pool, not the bounded hashing queue, the place where a
    burst waits (and times out). The next query checks a connection out again. Objects
    in ``keep`` stay usable: detached with what was loaded, not expired by the rollback.
    """
    for obj in keep:
        if obj is not None:
            session.expunge(obj)
    await session.rollback()


async def create_user(*, session: AsyncSession, email: str, password_hash: str) -> User:
    now = utcnow()
    user = User(id=uuid.uuid4(), email=email, password_hash=password_hash, created_at=now, updated_at=now)
    session.add(user)
    try:
        await session.commit()
    except sa_exc.IntegrityError:
        # Two registrations of one address raced past the caller's existence check.
        await session.rollback()
        raise Conflict("an account with this email already exists") from None
    return user


async def set_password_hash(*, session: AsyncSession, user: User, password_hash: str) -> None:
    session.add(user)  # attached again if release_connection detached it
    user.password_hash = password_hash
    user.updated_at = utcnow()
    await session.commit()


async def issue_refresh_token(
    *, session: AsyncSession, user_id: uuid.UUID, ttl: timedelta, family_id: uuid.UUID | None = None
) -> str:
    """Store a new refresh token (a new family unless ``family_id``); return the token itself."""
    token = new_refresh_token()
    now = utcnow()
    session.add(RefreshToken(id=uuid.uuid4(), token_hash=hash_refresh_token(token), family_id=family_id or uuid.uuid4(),
                             user_id=user_id, created_at=now, expires_at=now + ttl))
    await session.commit()
    return token


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def rotate_refresh_token(*, session: AsyncSession, token: str, ttl: timedelta) -> tuple[User, str]:
    """Spend ``token`` for a new one of the same family; return its user and the new token.

    A token that was already spent or revoked means two parties hold it, the client
    and a thief, and there is no telling which one is asking: the whole family is
    revoked, so both must log in again.
    """
    row = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(token)))
    if row is None:
        raise Unauthorized(INVALID_REFRESH_TOKEN)
    family_id, user_id = row.family_id, row.user_id
    if row.revoked_at is not None:
        log.warning("refresh_token_reuse", family_id=str(family_id), user_id=str(user_id))
        await _revoke_family(session, family_id)
        raise Unauthorized(INVALID_REFRESH_TOKEN)
    if row.expires_at <= utcnow():
        raise Unauthorized(INVALID_REFRESH_TOKEN)

    successor_token = new_refresh_token()
    successor_id = uuid.uuid4()
    now = utcnow()
    # Conditional on "not yet revoked": of two concurrent refreshes with one token,
    # exactly one wins here; the other is treated as the reuse it is.
    spent = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, replaced_by=successor_id)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        log.warning("refresh_token_reuse", family_id=str(family_id), user_id=str(user_id), concurrent=True)
        await _revoke_family(session, family_id)
        raise Unauthorized(INVALID_REFRESH_TOKEN)
    session.add(RefreshToken(id=successor_id, token_hash=hash_refresh_token(successor_token), family_id=family_id,
                             user_id=user_id, created_at=now, expires_at=now + ttl))
    user = await session.get(User, user_id)
    if user is None:  # deleted accounts take their tokens with them (ON DELETE CASCADE)
        await session.rollback()
        raise Unauthorized(INVALID_REFRESH_TOKEN)
    await session.commit()
    return user, successor_token


async def revoke_refresh_family(*, session: AsyncSession, token: str) -> None:
    """Log out: revoke the token's whole family. Unknown tokens are ignored (idempotent)."""
    family_id = await session.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == hash_refresh_token(token))
    )
    if family_id is not None:
        await _revoke_family(session, family_id)


async def purge_expired_refresh_tokens(*, session: AsyncSession, expired_before: datetime) -> int:
    """Delete refresh tokens that expired before ``expired_before``.

    An expired token is refused whatever its row says, so its row only keeps reuse
    detection for a token that can no longer be used; the table would otherwise grow
    by one row per login and refresh forever.
    """
    result = await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < expired_before))
    return int(getattr(result, "rowcount", 0) or 0)
