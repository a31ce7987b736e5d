"""Read queries over the snapshot table: stats, open tasks, popular titles."""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.data.models import TaskSnapshot
from services.data.schemas import Recommendation, StatsPublic
from services.kit.events import TaskPriority, TaskStatus


async def user_stats(*, session: AsyncSession, user_id: str) -> StatsPublic:
    rows = await session.execute(
        select(TaskSnapshot.deleted, TaskSnapshot.status, TaskSnapshot.priority, func.count())
        .where(TaskSnapshot.owner_id == user_id)
        .group_by(TaskSnapshot.deleted, TaskSnapshot.status, TaskSnapshot.priority)
    )
    by_priority = dict.fromkeys(get_args(TaskPriority), 0)
    by_status = dict.fromkeys(get_args(TaskStatus), 0)
    created = deleted = 0
    for is_deleted, status, priority, count in rows:
        created += count
        if is_deleted:
            deleted += count
            continue
        by_priority[priority] = by_priority.get(priority, 0) + count
        by_status[status] = by_status.get(status, 0) + count
    done = by_status.get("done", 0)
    return StatsPublic(user_id=user_id, created=created, open=sum(by_status.values()) - done, done=done,
                       deleted=deleted, by_priority=by_priority, by_status=by_status)


_PRIORITY_RANK = case({"high": 0, "medium": 1, "low": 2}, value=TaskSnapshot.priority, else_=3)


async def open_tasks(*, session: AsyncSession, user_id: str, limit: int) -> list[Recommendation]:
    """The caller's open tasks, most urgent first: priority, then oldest."""
    rows = await session.execute(
        select(TaskSnapshot.task_id, TaskSnapshot.title, TaskSnapshot.priority)
        .where(TaskSnapshot.owner_id == user_id, TaskSnapshot.deleted.is_(False), TaskSnapshot.status != "done")
        .order_by(_PRIORITY_RANK, TaskSnapshot.first_seen_at, TaskSnapshot.task_id)
        .limit(limit)
    )
    return [Recommendation(task_id=task_id, title=title, priority=priority) for task_id, title, priority in rows]


async def popular_titles(*, session: AsyncSession, limit: int, min_users: int,
                         users_since: datetime | None = None) -> list[Recommendation]:
    """Titles of live tasks shared by the most users, at least ``min_users`` each.

    Titles are compared by ``title_key`` (case, width and spacing folded). Only users whose
    first task was seen at or before ``users_since`` count (None: every user). Of a title's
    spellings, the one most of those users wrote is shown. How many users is not returned.
    """
    counted = [TaskSnapshot.deleted.is_(False)]
    if users_since is not None:
        settled = (select(TaskSnapshot.owner_id).group_by(TaskSnapshot.owner_id)
                   .having(func.min(TaskSnapshot.first_seen_at) <= users_since))
        counted.append(TaskSnapshot.owner_id.in_(settled))
    users = func.count(func.distinct(TaskSnapshot.owner_id))
    keys = list(await session.scalars(
        select(TaskSnapshot.title_key)
        .where(*counted)
        .group_by(TaskSnapshot.title_key)
        .having(users >= min_users)
        .order_by(users.desc(), TaskSnapshot.title_key)
        .limit(limit)
    ))
    if not keys:
        return []
    spellings = await session.execute(
        select(TaskSnapshot.title_key, TaskSnapshot.title, users)
        .where(*counted, TaskSnapshot.title_key.in_(keys))
        .group_by(TaskSnapshot.title_key, TaskSnapshot.title)
    )
    shown: dict[str, tuple[int, str]] = {}
    for key, title, count in spellings:
        best = shown.get(key)
        if best is None or count > best[0] or (count == best[0] and title < best[1]):
            shown[key] = (count, title)
    return [Recommendation(title=shown[key][1]) for key in keys]
