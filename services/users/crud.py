"""Profile persistence."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import utcnow
from services.users.models import Profile
from services.users.schemas import ProfileUpdate


async def get_or_create_profile(*, session: AsyncSession, user_id: str, email: str | None) -> Profile:
    """The caller's profile, created on first use from what their token says."""
    profile = await session.get(Profile, user_id)
    if profile is not None:
        return profile
    now = utcnow()
    profile = Profile(id=user_id, email=email, created_at=now, updated_at=now)
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
