"""Task events end to end: the real tasks app writes, its relay publishes, the real
data app consumes, and stats/recommendations follow. Both transports: the Redis
Stream (PostgreSQL + Redis) and the embedded mode (SQLite, HTTP ingest)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.kit import metric_names
from tests.services.conftest import running
from tests.support.events import data_app, outbox_settles, outbox_state, tasks_app, unique_stream
from tests.support.live import serve_app
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer, free_port
from tests.support.tokens import auth_header


def stats_of(client: httpx.AsyncClient, headers: dict[str, str]):
    async def probe() -> dict[str, Any]:
        response = await client.get("/api/v1/stats/me", headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())
    return probe


def stats_when(client: httpx.AsyncClient, headers: dict[str, str], accept: Callable[[dict[str, Any]], bool]):
    """A check for ``eventually``: the caller's stats, once ``accept`` holds for them."""
    async def check() -> dict[str, Any] | None:
        stats = await stats_of(client, headers)()
        return stats if accept(stats) else None
    return check


async def make_changes(tasks: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """Three tasks; one done, one re-prioritised, one deleted. Returns title -> id."""
    ids = {}
    for title, priority in (("Fix prod", "high"), ("Write docs", "low"), ("Tidy up", "medium")):
        created = await tasks.post("/api/v1/tasks", json={"title": title, "priority": priority}, headers=headers)
        assert created.status_code == 201, created.text
        ids[title] = created.json()["id"]
    assert (await tasks.patch(f"/api/v1/tasks/{ids['Fix prod']}", json={"status": "done"},
                              headers=headers)).status_code == 200
    assert (await tasks.patch(f"/api/v1/tasks/{ids['Write docs']}", json={"priority": "high"},
                              headers=headers)).status_code == 200
    assert (await tasks.delete(f"/api/v1/tasks/{ids['Tidy up']}", headers=headers)).status_code == 204
    return ids


EXPECTED = {"created": 3, "open": 1, "done": 1, "deleted": 1,
            "by_priority": {"low": 0, "medium": 0, "high": 2},
            "by_status": {"todo": 1, "in_progress": 0, "done": 1}}


def matches(expected: dict[str, Any]):
    return lambda stats: {k: stats[k] for k in expected} == expected


@pytest.fixture
def user() -> tuple[str, dict[str, str]]:
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    return user_id, auth_header(user_id)


async def test_through_the_redis_stream(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path, user: tuple[str, dict[str, str]]
) -> None:
    user_id, headers = user
    stream = unique_stream()
    tag = uuid.uuid4().hex[:8]
    tasks = tasks_app(database_url=postgres_server.create_database(f"pipe_tasks_{tag}"),
                      redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream)
    data = data_app(database_url=postgres_server.create_database(f"pipe_data_{tag}"),
                    redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream)
    async with running(tasks) as tasks_client, running(data) as data_client:
        ids = await make_changes(tasks_client, headers)
        await eventually(stats_when(data_client, headers, matches(EXPECTED)))
        recommended = (await data_client.get(f"/api/v1/recommendations/{user_id}", headers=headers)).json()
        assert recommended["source"] == "personalised"
        assert [r["task_id"] for r in recommended["recommendations"]] == [ids["Write docs"]]

        # Every event metric name is really exported by the service that owns it.
        exported = (await tasks_client.get("/metrics")).text + (await data_client.get("/metrics")).text
        assert [name for name in metric_names.EVENTS if f"\n{name}" not in exported] == []


async def test_data_down_on_the_stream_catches_up_when_it_starts(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path, user: tuple[str, dict[str, str]]
) -> None:
    """Events published while no consumer runs wait in the stream; none lost, none doubled."""
    _, headers = user
    stream = unique_stream()
    tag = uuid.uuid4().hex[:8]
    tasks = tasks_app(database_url=postgres_server.create_database(f"late_tasks_{tag}"),
                      redis_url=redis_server.url, data_dir=tmp_path, events_stream=stream)
    data_url = postgres_server.create_database(f"late_data_{tag}")
    async with running(tasks) as tasks_client:
        async with running(data_app(database_url=data_url, redis_url=redis_server.url, data_dir=tmp_path,
                                    events_stream=stream)) as data_client:
            created = await tasks_client.post("/api/v1/tasks", json={"title": "before"}, headers=headers)
            assert created.status_code == 201
            await eventually(stats_when(data_client, headers, lambda s: s["created"] == 1))
        for i in range(10):  # data is down
            assert (await tasks_client.post("/api/v1/tasks", json={"title": f"while down {i}"},
                                            headers=headers)).status_code == 201
        await eventually(outbox_settles(tasks, 11), message="11 events published")
        async with running(data_app(database_url=data_url, redis_url=redis_server.url, data_dir=tmp_path,
                                    events_stream=stream)) as data_client:
            stats = await eventually(stats_when(data_client, headers, lambda s: s["created"] >= 11))
            assert (stats["created"], stats["open"]) == (11, 11)


async def test_embedded_mode_over_http_and_a_data_outage(
    tmp_path: Path, user: tuple[str, dict[str, str]]
) -> None:
    """No Redis: the relay posts to data's internal ingest. While data is stopped the
    writes still succeed and the rows wait; after it returns every event arrives once."""
    _, headers = user
    port = free_port()
    data_db = f"sqlite+aiosqlite:///{tmp_path / 'data.db'}"
    tasks = tasks_app(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}", data_dir=tmp_path,
                      data_url=f"http://127.0.0.1:{port}")
    async with running(tasks) as tasks_client:
        async with serve_app(data_app(database_url=data_db, data_dir=tmp_path), port=port):
            ids = await make_changes(tasks_client, headers)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as data_client:
                await eventually(stats_when(data_client, headers, matches(EXPECTED)))
        # data is stopped now
        for i in range(8):
            response = await tasks_client.post("/api/v1/tasks", json={"title": f"offline {i}"}, headers=headers)
            assert response.status_code == 201, response.text
        await tasks_client.delete(f"/api/v1/tasks/{ids['Write docs']}", headers=headers)
        assert (await outbox_state(tasks))["unpublished"] == 9
        assert (await tasks_client.get("/health")).json()["checks"]["events"]["status"] == "up"

        async with serve_app(data_app(database_url=data_db, data_dir=tmp_path), port=port):
            await eventually(outbox_settles(tasks, 15), message="15 events published")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as data_client:
                stats = await stats_of(data_client, headers)()
        assert {k: stats[k] for k in ("created", "open", "done", "deleted")} == {
            "created": 11, "open": 8, "done": 1, "deleted": 2}
        metrics = (await tasks_client.get("/metrics")).text
        assert 'flotilla_outbox_published_total{target="http"} 15.0' in metrics
