"""Bare one-route apps the benchmark compares the tasks service against.

Both return the same page as ``GET /api/v1/tasks`` does for the benchmark's user (a full
page of 20 tasks) from the same handler body, so the difference in throughput is the
framework and server, not the work. Neither has auth, a database, a cache or logging:
that is what "bare" means, and what the tasks service's overhead is measured against.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from flask import Flask

PAGE_SIZE = 20


def _page() -> dict[str, Any]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    data = [
        {"title": f"bench task {i}", "description": None, "priority": "high",
         "id": f"00000000-0000-4000-8000-{i:012d}", "status": "todo",
         "created_at": (start + timedelta(minutes=i)).isoformat(),
         "updated_at": (start + timedelta(minutes=i)).isoformat()}
        for i in range(PAGE_SIZE)
    ]
    return {"data": data, "count": len(data), "next_cursor": None}


PAGE = _page()


def list_tasks() -> dict[str, Any]:
    return PAGE


fastapi_app = FastAPI()


@fastapi_app.get("/api/v1/tasks")
async def fastapi_list_tasks() -> dict[str, Any]:
    return list_tasks()


flask_app = Flask(__name__)


@flask_app.get("/api/v1/tasks")
def flask_list_tasks() -> dict[str, Any]:
    return list_tasks()
