"""Issue 14 item 10: bad input is a 422 in the error shape, never a 500.

Forged pagination cursors (wrong types, timestamps whose offset leaves the datetime
range, naive timestamps, missing fields) and PATCH bodies that null a required field or
change nothing, against the real tasks app on SQLite and on PostgreSQL + Redis. Each
refusal leaves the caller's tasks as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.conftest import running
from tests.support.cursors import forged_cursor
from tests.support.error_shape import assert_error_shape
from tests.support.events import tasks_app
from tests.support.tokens import auth_header

TASKS = "/api/v1/tasks"
TASK_HEX = "ab" * 16

#: Cursors no page of this API ever returned.
FORGED_CURSORS = {
    "id of the wrong type (the issue's example)": forged_cursor("2030-01-01T00:00:00+00:00", 123),
    "timestamp of the wrong type": forged_cursor(20300101, TASK_HEX),
    "below the datetime range in UTC": forged_cursor("0001-01-01T00:00:00+14:00", TASK_HEX),
    "above the datetime range in UTC": forged_cursor("9999-12-31T23:59:59.999999-14:00", TASK_HEX),
    "a naive timestamp": forged_cursor("2030-01-01T00:00:00", TASK_HEX),
    "a field missing": forged_cursor("2030-01-01T00:00:00+00:00"),
    "a field too many": forged_cursor("2030-01-01T00:00:00+00:00", TASK_HEX, 1),
    "an id that is not a uuid": forged_cursor("2030-01-01T00:00:00+00:00", "not-a-uuid"),
    "not a list": forged_cursor(),
    "not JSON": "bm90IGpzb24",
    "not base64": "%%%",
}
#: Well-formed cursors at the very ends of the range: a page (empty here), not an error.
EDGE_CURSORS = {
    "the first instant": forged_cursor("0001-01-01T00:00:00+00:00", TASK_HEX),
    "the last instant": forged_cursor("9999-12-31T23:59:59.999999+00:00", TASK_HEX),
}


@pytest.fixture
async def tasks(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(tasks_app(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)) as client:
        yield client


@pytest.fixture
def caller() -> dict[str, str]:
    return auth_header(f"bad-input-{uuid.uuid4().hex[:8]}")


async def make_task(tasks: httpx.AsyncClient, caller: dict[str, str]) -> dict[str, Any]:
    created = await tasks.post(TASKS, json={"title": "Keep me", "description": "as is"}, headers=caller)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_forged_cursors_are_422_in_the_error_shape(tasks: httpx.AsyncClient, caller: dict[str, str]) -> None:
    await make_task(tasks, caller)
    for case, cursor in FORGED_CURSORS.items():
        response = await tasks.get(TASKS, params={"cursor": cursor}, headers=caller)
        body = assert_error_shape(response, 422, "validation_error")
        assert body["details"]["errors"][0]["loc"] == ["query", "cursor"], case


async def test_cursors_at_the_edges_of_the_range_are_pages_not_errors(tasks: httpx.AsyncClient,
                                                                       caller: dict[str, str]) -> None:
    task = await make_task(tasks, caller)
    for case, cursor in EDGE_CURSORS.items():
        response = await tasks.get(TASKS, params={"cursor": cursor}, headers=caller)
        assert response.status_code == 200, (case, response.text)
        assert [t["id"] for t in response.json()["data"]] in ([], [task["id"]]), case


@pytest.mark.parametrize("patch", [{"priority": None}, {"status": None}, {"title": None},
                                   {"priority": None, "status": None}, {}])
async def test_patches_that_null_a_required_field_or_change_nothing_are_422(
    tasks: httpx.AsyncClient, caller: dict[str, str], patch: dict[str, Any]
) -> None:
    task = await make_task(tasks, caller)
    url = f"{TASKS}/{task['id']}"
    body = assert_error_shape(await tasks.patch(url, json=patch, headers=caller), 422, "validation_error")
    assert body["details"]["errors"], body
    assert (await tasks.get(url, headers=caller)).json() == task  # updated_at included: nothing was written
