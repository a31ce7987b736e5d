"""Named dependencies of the auth routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.auth.runtime import AuthRuntime, auth_runtime
from services.kit.deps import KitDep


# async although it does no I/O: FastAPI would run a sync dependency in its thread pool.
async def get_runtime(kit: KitDep) -> AuthRuntime:
    return auth_runtime(kit)


RuntimeDep = Annotated[AuthRuntime, Depends(get_runtime)]
