"""HTTP API of the tasks service: /api/v1/tasks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.kit.deps import CacheDep, CurrentUserId, KitDep, SessionDep
from services.tasks import crud
from services.tasks.models import Priority, Status
from services.tasks.schemas import TaskCreate, TaskPublic, TasksPublic, TaskUpdate

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

JSON = "application/json"


def _list_namespace(user_id: str) -> str:
    return f"list:{user_id}"


@router.get("", response_model=TasksPublic, summary="List the caller's tasks, newest first")
async def list_tasks(
    user_id: CurrentUserId,
    kit: KitDep,
    cache: CacheDep,
    status: Status | None = None,
    priority: Priority | None = None,
    cursor: Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    cache_key = f"{status}:{priority}:{limit}:{cursor}"
    cached, store_key = await cache.lookup(_list_namespace(user_id), cache_key)
    if cached is not None:
        return Response(cached, media_type=JSON, headers={"X-Cache": "hit"})
    # The session is opened only on a miss: a cache hit (the hot path) never touches the pool.
    async with kit.database.session() as session:
        tasks, next_cursor = await crud.list_tasks(
            session=session, owner_id=user_id, status=status, priority=priority, cursor=cursor, limit=limit
        )
    page = TasksPublic(data=[TaskPublic.model_validate(t) for t in tasks], count=len(tasks), next_cursor=next_cursor)
    body = page.model_dump_json().encode()
    await cache.store(store_key, body)
    return Response(body, media_type=JSON, headers={"X-Cache": "miss"})


@router.post("", response_model=TaskPublic, status_code=status.HTTP_201_CREATED, summary="Create a task")
async def create_task(task_in: TaskCreate, user_id: CurrentUserId, session: SessionDep, cache: CacheDep) -> TaskPublic:
    task = await crud.create_task(session=session, owner_id=user_id, task_in=task_in)
    await cache.invalidate(_list_namespace(user_id))
    return TaskPublic.model_validate(task)


@router.get("/{task_id}", response_model=TaskPublic, summary="Get one of the caller's tasks")
async def get_task(task_id: uuid.UUID, user_id: CurrentUserId, session: SessionDep) -> TaskPublic:
    return TaskPublic.model_validate(await crud.get_task(session=session, owner_id=user_id, task_id=task_id))


@router.patch("/{task_id}", response_model=TaskPublic, summary="Change some fields of a task")
async def update_task(
    task_id: uuid.UUID, task_in: TaskUpdate, user_id: CurrentUserId, session: SessionDep, cache: CacheDep
) -> TaskPublic:
    task = await crud.get_task(session=session, owner_id=user_id, task_id=task_id)
    task = await crud.update_task(session=session, task=task, task_in=task_in)
    await cache.invalidate(_list_namespace(user_id))
    return TaskPublic.model_validate(task)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a task")
async def delete_task(task_id: uuid.UUID, user_id: CurrentUserId, session: SessionDep, cache: CacheDep) -> Response:
    task = await crud.get_task(session=session, owner_id=user_id, task_id=task_id)
    await crud.delete_task(session=session, task=task)
    await cache.invalidate(_list_namespace(user_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
