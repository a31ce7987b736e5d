"""Named dependencies, so a route's signature reads like its contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.app import Kit, get_kit
from services.kit.cache import Cache
from services.kit.openapi import raises
from services.kit.security import Principal, bearer_token


# Dependencies are `async def` even when they do no I/O: FastAPI runs a sync dependency
# in its thread pool, a thread hop (and GIL hand-over) on every request.
async def _kit_dependency(request: Request) -> Kit:
    return get_kit(request)


KitDep = Annotated[Kit, Depends(_kit_dependency)]


async def get_session(kit: KitDep) -> AsyncIterator[AsyncSession]:
    async with kit.database.session() as session:
        yield session


# The ones below take the Request itself rather than other dependencies: every
# dependency is a node FastAPI solves per request, and these sit on every hot route.
async def get_cache(request: Request) -> Cache:
    return get_kit(request).cache


@raises(401)
async def get_principal(request: Request) -> Principal:
    return await get_kit(request).verifier.verify(bearer_token(request.headers.get("authorization")))


@raises(401)
async def get_user_id(request: Request) -> str:
    return (await get_principal(request)).user_id


SessionDep = Annotated[AsyncSession, Depends(get_session)]
CacheDep = Annotated[Cache, Depends(get_cache)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
#: The caller's user id, from a verified bearer token; never from the request body.
CurrentUserId = Annotated[str, Depends(get_user_id)]
