"""Task JSON as the API returns it, and the cached first page rewritten after a create.

The hot paths (list, create) build JSON straight from rows with orjson instead of
row -> ORM object -> pydantic model -> JSON: the output is the same document
``TaskPublic`` / ``TasksPublic`` describe (a test keeps the two equal), at a fraction of
the CPU per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from services.tasks.cursor import encode_cursor

#: The page a client asks for without filters or cursor: the one kept up to date on writes.
DEFAULT_LIMIT = 20
#: orjson writes UTC as "Z", as pydantic does.
_JSON_OPTIONS = orjson.OPT_UTC_Z


def task_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """One task in the ``TaskPublic`` shape from a row of the tasks table."""
    return {
        "id": str(row["id"]), "title": row["title"], "description": row["description"],
        "priority": row["priority"], "status": row["status"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=_JSON_OPTIONS)


def page_json(rows: list[Mapping[str, Any]], limit: int) -> bytes:
    """A ``TasksPublic`` page from up to ``limit + 1`` rows, newest first."""
    page = [task_json(row) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if more and page else None
    return dumps({"data": page, "count": len(page), "next_cursor": next_cursor})


def with_new_task(cached_page: bytes, task: Mapping[str, Any], limit: int) -> bytes | None:
    """The first page after ``task`` was created, from the page cached before it.

    None when the new task would not be first (a clock behind the newest task's, e.g.
    another replica's): then the page cannot be derived and is simply invalidated.
    """
    page = orjson.loads(cached_page)
    data: list[dict[str, Any]] = page["data"]
    created_at: datetime = task["created_at"]
    if data and datetime.fromisoformat(data[0]["created_at"]) >= created_at:
        return None
    data.insert(0, task_json(task))
    if len(data) > limit:
        # The page was full, so at least one older task follows the new last one.
        data.pop()
        last = data[-1]
        page["next_cursor"] = encode_cursor(datetime.fromisoformat(last["created_at"]), uuid.UUID(last["id"]))
    page["count"] = len(data)
    return dumps(page)

