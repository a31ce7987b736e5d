"""HTTP API of the tasks service: /api/v1/tasks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from services.kit.app import Kit
from services.kit.deps import CacheDep, CurrentUserId, KitDep, SessionDep
from services.tasks import crud, pages
from services.tasks.models import Priority, Status
from services.tasks.schemas import TaskCreate, TaskPublic, TasksPublic, TaskUpdate

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

JSON = "application/json"


def _list_namespace(user_id: str) -> str:
    return f"list:{user_id}"


def _page_key(status: Status | None, priority: Priority | None, limit: int, cursor: str | None) -> str:
    return f"{status}:{priority}:{limit}:{cursor}"


#: The page kept up to date on creates (written through) rather than only invalidated.
FIRST_PAGE_KEY = _page_key(None, None, pages.DEFAULT_LIMIT, None)


@router.get("", response_model=TasksPublic, summary="List the caller's tasks, newest first")
async def list_tasks(
    user_id: CurrentUserId,
    kit: KitDep,
    status: Status | None = None,
    priority: Priority | None = None,
    cursor: Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = pages.DEFAULT_LIMIT,
) -> Response:
    cache = kit.cache
    cached, slot = await cache.lookup(_list_namespace(user_id), _page_key(status, priority, limit, cursor))
    if cached is not None:
        return Response(cached, media_type=JSON, headers={"X-Cache": "hit"})
    # The database only on a miss: a hit never touches the pool.
    body = await _page_from_database(kit, user_id, status=status, priority=priority, cursor=cursor, limit=limit)
    await cache.store(slot, body)
    return Response(body, media_type=JSON, headers={"X-Cache": "miss"})


@router.post("", response_model=TaskPublic, status_code=status.HTTP_201_CREATED, summary="Create a task")
async def create_task(task_in: TaskCreate, user_id: CurrentUserId, kit: KitDep) -> Response:
    task = await crud.create_task(database=kit.database, owner_id=user_id, task_in=task_in)
    await _write_through_first_page(kit, user_id, task)
    return Response(pages.dumps(pages.task_json(task)), status_code=status.HTTP_201_CREATED, media_type=JSON)


async def _write_through_first_page(kit: Kit, user_id: str, task: Mapping[str, Any]) -> None:
    """After a create, store the new first page (what the client reads next) instead of
    only invalidating: derived from the cached page when there is one, else read once.

    Reading it here even when nothing was cached matters under concurrency: a client's
    reads in flight beside its write would otherwise miss, store pages the next write
    invalidates, and keep missing. ``Cache.invalidate`` stores the page only if no other
    write came in between, so it never lacks a write.
    """
    namespace = _list_namespace(user_id)
    cached, slot = await kit.cache.lookup(namespace, FIRST_PAGE_KEY)
    if slot is None:  # the cache is unreachable
        await kit.cache.invalidate(namespace)
        return
    page = pages.with_new_task(cached, task, pages.DEFAULT_LIMIT) if cached is not None else None
    if page is None:
        page = await _page_from_database(kit, user_id, status=None, priority=None, cursor=None,
                                         limit=pages.DEFAULT_LIMIT)
    await kit.cache.invalidate(namespace, replacement=(slot, page))


async def _page_from_database(kit: Kit, user_id: str, *, status: Status | None, priority: Priority | None,
                              cursor: str | None, limit: int) -> bytes:
    # One SELECT, outside a transaction: no BEGIN/ROLLBACK around it.
    async with kit.database.autocommit() as conn:
        rows = await crud.list_tasks(conn=conn, owner_id=user_id, status=status, priority=priority,
                                     cursor=cursor, limit=limit)
    return pages.page_json(rows, limit)


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
