"""HTTP API of the users service: /api/v1/users/me.

There is deliberately no route that takes a user id: the only profile a caller can
name is their own, so no per-route ownership check can be forgotten.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from services.kit.deps import CacheDep, PrincipalDep, SessionDep
from services.kit.errors import Unauthorized
from services.kit.security import Principal
from services.users import crud
from services.users.schemas import ProfilePublic, ProfileUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])

JSON = "application/json"
MAX_EMAIL_LENGTH = 320
MAX_USER_ID_LENGTH = 64  # Profile.id


async def _caller(principal: PrincipalDep) -> Principal:
    # A subject the table cannot hold is no user auth issued; refuse it as such
    # instead of failing at insert time.
    if len(principal.user_id) > MAX_USER_ID_LENGTH:
        raise Unauthorized("token subject not accepted")
    return principal


CallerDep = Annotated[Principal, Depends(_caller)]


def _namespace(user_id: str) -> str:
    return f"profile:{user_id}"


def _email_claim(principal: Principal) -> str | None:
    email = principal.claims.get("email")
    return email if isinstance(email, str) and 0 < len(email) <= MAX_EMAIL_LENGTH else None


@router.get("/me", response_model=ProfilePublic,
            summary="The caller's profile (created on first use; created_at is the registration time)")
async def read_me(principal: CallerDep, session: SessionDep, cache: CacheDep) -> Response:
    cached, store_key = await cache.lookup(_namespace(principal.user_id), "me")
    if cached is not None:
        return Response(cached, media_type=JSON, headers={"X-Cache": "hit"})
    profile = await crud.get_or_create_profile(session=session, user_id=principal.user_id,
                                               email=_email_claim(principal),
                                               created_at=principal.account_created_at())
    body = ProfilePublic.model_validate(profile).model_dump_json().encode()
    await cache.store(store_key, body)
    return Response(body, media_type=JSON, headers={"X-Cache": "miss"})


@router.patch("/me", response_model=ProfilePublic, summary="Change the caller's display name or bio")
async def update_me(
    profile_in: ProfileUpdate, principal: CallerDep, session: SessionDep, cache: CacheDep
) -> ProfilePublic:
    profile = await crud.get_or_create_profile(session=session, user_id=principal.user_id,
                                               email=_email_claim(principal),
                                               created_at=principal.account_created_at())
    profile = await crud.update_profile(session=session, profile=profile, profile_in=profile_in)
    await cache.invalidate(_namespace(principal.user_id))
    return ProfilePublic.model_validate(profile)
