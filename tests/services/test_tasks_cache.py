"""The tasks list cache: written through on create, never different from the database.

Runs on both cache backends: Redis (next to PostgreSQL) and the in-process one (SQLite).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.tasks.app import create_app
from services.tasks.pages import DEFAULT_LIMIT
from services.tasks.schemas import TaskPublic, TasksPublic
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.support.tokens import auth_header


@pytest.fixture
async def app_and_client(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, Any]]:
    app = create_app(TasksSettings(**service_env("TASKS_", database_url=database_url, redis_url=redis_url,
                                                 data_dir=tmp_path)))
    async with running(app) as client:
        yield app, client


async def first_page_from_database(app: FastAPI, client: httpx.AsyncClient, user_id: str) -> httpx.Response:
    await app.state.kit.cache.invalidate(f"list:{user_id}")
    response = await client.get("/api/v1/tasks", headers=auth_header(user_id))
    assert response.headers["x-cache"] == "miss"
    return response


@pytest.mark.parametrize("tasks_before", [0, 3, DEFAULT_LIMIT - 1, DEFAULT_LIMIT, DEFAULT_LIMIT + 5])
async def test_written_through_first_page_equals_the_database_page(
    app_and_client: tuple[FastAPI, httpx.AsyncClient], tasks_before: int
) -> None:
    app, client = app_and_client
    user = f"writer-{uuid.uuid4().hex[:8]}"
    headers = auth_header(user)
    for i in range(tasks_before):
        assert (await client.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=headers)).status_code == 201
    await client.get("/api/v1/tasks", headers=headers)  # cache the first page
    created = await client.post("/api/v1/tasks", json={"title": "newest", "description": "d", "priority": "high"},
                                headers=headers)
    assert created.status_code == 201
    cached = await client.get("/api/v1/tasks", headers=headers)
    assert cached.headers["x-cache"] == "hit"
    fresh = await first_page_from_database(app, client, user)
    assert cached.json() == fresh.json()
    assert cached.json()["data"][0] == created.json()
    assert TasksPublic.model_validate(cached.json()).count == min(tasks_before + 1, DEFAULT_LIMIT)


async def test_a_create_with_nothing_cached_stores_the_first_page(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """Reads in flight beside a write must not keep missing: the write stores the page."""
    app, client = app_and_client
    user = f"fresh-{uuid.uuid4().hex[:8]}"
    headers = auth_header(user)
    for i in range(3):
        await client.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=headers)
    first = await client.get("/api/v1/tasks", headers=headers)
    assert first.headers["x-cache"] == "hit"
    assert first.json() == (await first_page_from_database(app, client, user)).json()


async def test_concurrent_creates_never_leave_a_page_without_one_of_them(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_and_client
    user = f"racer-{uuid.uuid4().hex[:8]}"
    headers = auth_header(user)
    await client.get("/api/v1/tasks", headers=headers)
    responses = await asyncio.gather(*(client.post("/api/v1/tasks", json={"title": f"c{i}"}, headers=headers)
                                       for i in range(12)))
    assert {r.status_code for r in responses} == {201}
    listed = (await client.get("/api/v1/tasks", headers=headers)).json()
    assert {t["id"] for t in listed["data"]} == {r.json()["id"] for r in responses}
    assert listed == (await first_page_from_database(app, client, user)).json()


async def test_fast_json_is_the_documented_shape(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """The hot paths write JSON without pydantic; it must be exactly what the models say."""
    _, client = app_and_client
    headers = auth_header(f"shape-{uuid.uuid4().hex[:8]}")
    created = (await client.post("/api/v1/tasks", json={"title": "Ship it", "priority": "high"},
                                 headers=headers)).json()
    assert created == TaskPublic.model_validate(created).model_dump(mode="json")
    for _ in range(DEFAULT_LIMIT + 1):
        await client.post("/api/v1/tasks", json={"title": "more"}, headers=headers)
    page = (await client.get("/api/v1/tasks", headers=headers)).json()
    assert page == TasksPublic.model_validate(page).model_dump(mode="json")
    assert page["next_cursor"]


async def test_cache_turned_off_reads_the_database_every_time(database_url: str, redis_url: str,
                                                             tmp_path: Path) -> None:
    app = create_app(TasksSettings(**service_env("TASKS_", database_url=database_url, redis_url=redis_url,
                                                 data_dir=tmp_path, cache_enabled=False)))
    headers = auth_header(f"nocache-{uuid.uuid4().hex[:8]}")
    async with running(app) as client:
        for title in ("one", "two"):
            await client.post("/api/v1/tasks", json={"title": title}, headers=headers)
            listed = await client.get("/api/v1/tasks", headers=headers)
            assert listed.headers["x-cache"] == "miss"
            assert listed.json()["data"][0]["title"] == title
        assert (await client.get("/api/v1/tasks", headers=headers)).headers["x-cache"] == "miss"
        assert 'flotilla_cache_requests_total{cache="default",result="hit"} 0.0' in (await client.get("/metrics")).text
