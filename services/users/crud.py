"""Profile persistence."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import utcnow
from services.users.models import Profile
from services.users.schemas import ProfileUpdate


async def get_or_create_profile(*, session: AsyncSession, user_id: str, email: str | None,
                                created_at: datetime | None = None) -> Profile:
    """The caller's profile, created on first use from what their token says.

    ``created_at``: the account's registration time (the token's claim), which a new
    profile takes as its own; the time of this first use only when the token has none.
    """
    profile = await session.get(Profile, user_id)
    if profile is not None:
        return profile
    now = utcnow()
    registered = created_at if created_at is not None and created_at <= now else now
    profile = Profile(id=user_id, email=email, created_at=registered, updated_at=registered)
    session.add(profile)
    try:
        await session.commit()
    except sa_exc.IntegrityError:
        # The caller's first two requests raced; the other one created it.
        await session.rollback()
        existing = await session.get(Profile, user_id)
        if existing is None:
            raise
        return existing
    return profile


async def update_profile(*, session: AsyncSession, profile: Profile, profile_in: ProfileUpdate) -> Profile:
    for field, value in profile_in.model_dump(exclude_unset=True).items():
        setattr(profile, field, value)
    profile.updated_at = utcnow()
    await session.commit()
    return profile
