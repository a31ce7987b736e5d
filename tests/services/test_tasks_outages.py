"""Dependencies going away and coming back, against real servers (no mocks)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from services.tasks.app import create_app
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import auth_header


async def test_redis_down_reads_fall_through_to_database_and_health_degrades(
    postgres_server: PostgresServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database(f"redis_outage_{uuid.uuid4().hex[:8]}")
    settings = TasksSettings(**service_env("TASKS_", database_url=url, redis_url=own_redis.url, data_dir=tmp_path,
                                           redis_timeout_seconds=0.3))
    alice = auth_header("alice")
    async with running(create_app(settings)) as client:
        first = (await client.post("/api/v1/tasks", json={"title": "before"}, headers=alice)).json()
        await client.get("/api/v1/tasks", headers=alice)
        assert (await client.get("/api/v1/tasks", headers=alice)).headers["x-cache"] == "hit"

        own_redis.stop()
        read = await client.get("/api/v1/tasks", headers=alice)
        assert read.status_code == 200
        assert read.headers["x-cache"] == "miss"
        assert [t["id"] for t in read.json()["data"]] == [first["id"]]
        second = await client.post("/api/v1/tasks", json={"title": "during outage"}, headers=alice)
        assert second.status_code == 201
        report = await client.get("/health")
        assert report.status_code == 200
        assert report.json()["status"] == "degraded"
        assert report.json()["checks"]["redis"]["status"] == "down"
        assert (await client.get("/health/ready")).status_code == 200

        own_redis.start()
        assert (await client.get("/health")).json()["status"] == "healthy"
        after = (await client.get("/api/v1/tasks", headers=alice)).json()
        assert [t["title"] for t in after["data"]] == ["during outage", "before"]


async def test_redis_restart_with_stale_entries_never_serves_them(
    postgres_server: PostgresServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    """An invalidation lost during an outage must not resurrect a stale page afterwards."""
    url = postgres_server.create_database(f"redis_stale_{uuid.uuid4().hex[:8]}")
    settings = TasksSettings(**service_env("TASKS_", database_url=url, redis_url=own_redis.url, data_dir=tmp_path,
                                           redis_timeout_seconds=0.3))
    alice = auth_header("alice")
    async with running(create_app(settings)) as client:
        await client.get("/api/v1/tasks", headers=alice)  # cache the empty page
        # Redis is paused (not restarted), so the cached page survives the "outage".
        assert own_redis.process is not None
        own_redis.process.send_signal(__import__("signal").SIGSTOP)
        try:
            created = await client.post("/api/v1/tasks", json={"title": "written while redis hung"}, headers=alice)
            assert created.status_code == 201
        finally:
            own_redis.process.send_signal(__import__("signal").SIGCONT)
        page = (await client.get("/api/v1/tasks", headers=alice)).json()
        assert [t["title"] for t in page["data"]] == ["written while redis hung"]


async def test_postgres_down_is_503_with_retry_after_then_recovers_without_restart(
    own_postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    url = own_postgres.create_database("tasks")
    settings = TasksSettings(**service_env("TASKS_", database_url=url, redis_url=redis_server.url, data_dir=tmp_path,
                                           db_pool_timeout_seconds=2.0))
    alice = auth_header(f"alice-{uuid.uuid4().hex[:6]}")
    async with running(create_app(settings)) as client:
        task = (await client.post("/api/v1/tasks", json={"title": "kept"}, headers=alice)).json()

        own_postgres.stop()
        for response in (
            await client.get(f"/api/v1/tasks/{task['id']}", headers=alice),
            await client.post("/api/v1/tasks", json={"title": "refused"}, headers=alice),
            await client.get("/api/v1/tasks", params={"priority": "low"}, headers=alice),
        ):
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            body = response.json()
            assert body["error_code"] == "dependency_unavailable"
            assert body["details"] == {"dependency": "database"}
            assert "Traceback" not in response.text
            assert "password" not in response.text
        # Readiness is reused for a second (a probe flood never multiplies the checks).
        ready = await eventually(lambda: _ready_status(client, 503))
        assert ready.json()["checks"]["database"]["status"] == "down"
        assert (await client.get("/health")).json()["status"] == "unhealthy"
        assert (await client.get("/health/live")).status_code == 200

        own_postgres.start()
        await eventually(lambda: _ready_status(client, 200))
        assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)).status_code == 200
        created = await client.post("/api/v1/tasks", json={"title": "after"}, headers=alice)
        assert created.status_code == 201
        titles = [t["title"] for t in (await client.get("/api/v1/tasks", headers=alice)).json()["data"]]
        assert titles == ["after", "kept"]


async def _ready_status(client: httpx.AsyncClient, expected: int) -> httpx.Response | None:
    response = await client.get("/health/ready")
    return response if response.status_code == expected else None
