"""Tasks API against PostgreSQL + Redis and against the embedded SQLite default."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from services.kit import metric_names
from services.tasks.app import create_app
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.support.cursors import forged_cursor
from tests.support.error_shape import assert_error_shape
from tests.support.polling import eventually
from tests.support.tokens import auth_header


def tasks_app(database_url: str, redis_url: str, tmp_path: Path):
    return create_app(TasksSettings(**service_env("TASKS_", database_url=database_url, redis_url=redis_url,
                                                  data_dir=tmp_path)))


@pytest.fixture
async def client(database_url: str, redis_url: str, tmp_path: Path):
    async with running(tasks_app(database_url, redis_url, tmp_path)) as client:
        yield client


@pytest.fixture
def alice() -> dict[str, str]:
    return auth_header(f"alice-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def bob() -> dict[str, str]:
    return auth_header(f"bob-{uuid.uuid4().hex[:8]}")


async def test_create_get_update_delete(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    created = await client.post("/api/v1/tasks", json={"title": "  Ship it ", "priority": "high"}, headers=alice)
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["title"] == "Ship it"
    assert task["priority"] == "high"
    assert task["status"] == "todo"
    assert task["description"] is None

    fetched = await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)
    assert fetched.json() == task

    patched = await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done", "description": "ok"},
                                 headers=alice)
    assert patched.status_code == 200
    assert patched.json()["status"] == "done"
    assert patched.json()["description"] == "ok"
    assert patched.json()["title"] == "Ship it"

    deleted = await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)
    assert_error_shape(gone, 404, "not_found")


async def test_default_priority_is_medium(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    created = await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice)
    assert created.json()["priority"] == "medium"


async def test_keyset_pagination_covers_every_task_once_newest_first(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    made = []
    for i in range(25):
        response = await client.post("/api/v1/tasks", json={"title": f"t{i}", "priority": ("low", "high")[i % 2]},
                                     headers=alice)
        made.append(response.json()["id"])

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/tasks", params=params, headers=alice)).json()
        pages += 1
        assert page["count"] == len(page["data"])
        seen.extend(t["id"] for t in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))

    high = (await client.get("/api/v1/tasks", params={"priority": "high", "limit": 100}, headers=alice)).json()
    assert {t["priority"] for t in high["data"]} == {"high"}
    assert high["count"] == 12
    done = (await client.get("/api/v1/tasks", params={"status": "done"}, headers=alice)).json()
    assert done["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "priority": "urgent"}, "priority"),
        ({"title": "ok", "owner_id": "someone-else"}, "owner_id"),
        ({"title": "nul\x00byte"}, "title"),
        ({}, "title"),
    ],
)
async def test_invalid_task_bodies_are_422_in_error_shape(
    client: httpx.AsyncClient, alice: dict[str, str], body: dict, field: str
) -> None:
    response = await client.post("/api/v1/tasks", json=body, headers=alice)
    error = assert_error_shape(response, 422, "validation_error")
    assert any(field in e["loc"] for e in error["details"]["errors"])
    # the offending input is not echoed back (it could be a secret)
    assert all("input" not in e for e in error["details"]["errors"])
    listing = (await client.get("/api/v1/tasks", headers=alice)).json()
    assert listing["data"] == []


async def test_malformed_json_and_bad_ids_and_cursors(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    bad_json = await client.post("/api/v1/tasks", content=b"{not json", headers={**alice,
                                                                                 "content-type": "application/json"})
    assert_error_shape(bad_json, 422, "validation_error")
    assert_error_shape(await client.get("/api/v1/tasks/not-a-uuid", headers=alice), 422, "validation_error")
    traversal = await client.get("/api/v1/tasks/..%2F..%2Fetc%2Fpasswd", headers=alice)
    assert_error_shape(traversal, 404, "not_found")
    assert_error_shape(await client.get("/api/v1/tasks", params={"cursor": "garbage!"}, headers=alice), 422,
                       "validation_error")
    assert_error_shape(await client.get("/api/v1/tasks", params={"limit": 0}, headers=alice), 422,
                       "validation_error")
    assert_error_shape(await client.get("/api/v1/nothing-here", headers=alice), 404, "not_found")
    assert_error_shape(await client.put("/api/v1/tasks", headers=alice), 405, "method_not_allowed")


@pytest.mark.parametrize("cursor", [
    forged_cursor("2030-01-01T00:00:00+00:00", 123),  # id of the wrong type
    forged_cursor(20300101, "ab" * 16),  # timestamp of the wrong type
    forged_cursor("0001-01-01T00:00:00+14:00", "ab" * 16),  # leaves the datetime range in UTC
    forged_cursor("2030-01-01T00:00:00+00:00"),  # a field missing
])
async def test_forged_cursors_are_422_not_500(client: httpx.AsyncClient, alice: dict[str, str], cursor: str) -> None:
    response = await client.get("/api/v1/tasks", params={"cursor": cursor}, headers=alice)
    body = assert_error_shape(response, 422, "validation_error")
    assert body["details"]["errors"][0]["loc"] == ["query", "cursor"]


async def test_patch_with_null_for_a_required_field_is_422(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    task = (await client.post("/api/v1/tasks", json={"title": "keep", "description": "d"}, headers=alice)).json()
    for field in ("title", "priority", "status"):
        response = await client.patch(f"/api/v1/tasks/{task['id']}", json={field: None}, headers=alice)
        assert_error_shape(response, 422, "validation_error")
    cleared = await client.patch(f"/api/v1/tasks/{task['id']}", json={"description": None}, headers=alice)
    assert cleared.status_code == 200
    assert cleared.json() == {**task, "description": None, "updated_at": cleared.json()["updated_at"]}


async def test_an_empty_patch_is_422_and_changes_nothing(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    task = (await client.post("/api/v1/tasks", json={"title": "as is"}, headers=alice)).json()
    assert_error_shape(await client.patch(f"/api/v1/tasks/{task['id']}", json={}, headers=alice), 422,
                       "validation_error")
    assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)).json() == task  # updated_at too


async def test_users_cannot_see_or_touch_each_others_tasks(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    task = (await client.post("/api/v1/tasks", json={"title": "alice's"}, headers=alice)).json()
    url = f"/api/v1/tasks/{task['id']}"
    assert_error_shape(await client.get(url, headers=bob), 404, "not_found")
    assert_error_shape(await client.patch(url, json={"title": "pwned"}, headers=bob), 404, "not_found")
    assert_error_shape(await client.delete(url, headers=bob), 404, "not_found")
    assert (await client.get("/api/v1/tasks", headers=bob)).json()["data"] == []
    assert (await client.get(url, headers=alice)).json()["title"] == "alice's"


async def test_write_is_visible_on_next_read_through_the_cache(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    first = await client.get("/api/v1/tasks", headers=alice)
    assert first.headers["x-cache"] == "miss"

    async def cached() -> bool:
        return (await client.get("/api/v1/tasks", headers=alice)).headers["x-cache"] == "hit"

    # The next read is a hit. On a loaded machine a Redis health check that overran its
    # deadline can mark the cache down for a moment (reads then miss, never fail), so wait.
    await eventually(cached)
    task = (await client.post("/api/v1/tasks", json={"title": "new"}, headers=alice)).json()
    after_create = await client.get("/api/v1/tasks", headers=alice)
    assert after_create.headers["x-cache"] == "hit"  # written through by the create
    assert [t["id"] for t in after_create.json()["data"]] == [task["id"]]
    await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "renamed"}, headers=alice)
    assert (await client.get("/api/v1/tasks", headers=alice)).json()["data"][0]["title"] == "renamed"
    await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)
    assert (await client.get("/api/v1/tasks", headers=alice)).json()["data"] == []


async def test_request_id_is_honoured_and_returned(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    response = await client.get("/api/v1/tasks/not-a-uuid", headers={**alice, "X-Request-ID": "req-123"})
    assert response.headers["x-request-id"] == "req-123"
    assert response.json()["request_id"] == "req-123"
    generated = await client.get("/api/v1/tasks", headers={**alice, "X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32


async def test_health_endpoints_and_metrics(client: httpx.AsyncClient, alice: dict[str, str], backend: str) -> None:
    assert (await client.get("/health/live")).json() == {"status": "alive"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["status"] == "up"
    report = (await client.get("/health")).json()
    assert report["status"] == "healthy"
    assert ("redis" in report["checks"]) is (backend == "postgres")

    await client.get("/api/v1/tasks", headers=alice)
    await client.get("/api/v1/tasks")
    exposition = (await client.get("/metrics")).text
    for name in (metric_names.HTTP_REQUESTS_TOTAL, metric_names.HTTP_REQUEST_DURATION_SECONDS + "_bucket",
                 metric_names.HTTP_REQUESTS_INPROGRESS, metric_names.DEPENDENCY_UP, metric_names.CACHE_REQUESTS_TOTAL,
                 metric_names.DB_POOL_IN_USE, metric_names.ERRORS_TOTAL, metric_names.SERVICE_INFO):
        assert f"\n{name}" in exposition, name
    assert 'handler="/api/v1/tasks"' in exposition
    assert 'error_code="unauthorized"' in exposition
    # runtime series, which a registry of one's own does not have unless added
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info",
                 "python_gc_collections_total"):
        assert f"\n{name}" in exposition, name
