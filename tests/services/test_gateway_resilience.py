"""Upstream outages behind the gateway: 503/504 in the error shape, breaker, retries.

The upstream is the real tasks service on a real socket; it is stopped and restarted,
or told (through the Recorder wrapper) to fail or hang for the next few requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kit.errors import SHED_HEADER
from tests.services.gateway_support import dead_url, gateway, live_tasks
from tests.support.error_shape import assert_error_shape
from tests.support.live import port_of
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer
from tests.support.tokens import auth_header


@pytest.fixture
def alice() -> dict[str, str]:
    """Minted per test: a token made at import would expire before a long suite reaches it."""
    return auth_header("alice")


async def test_upstream_down_is_503_with_retry_after(alice: dict[str, str]) -> None:
    async with gateway(tasks_url=dead_url()) as client:
        for response in (await client.get("/api/v1/tasks", headers=alice),
                         await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice)):
            body = assert_error_shape(response, 503, "dependency_unavailable")
            assert body["details"] == {"dependency": "tasks"}
            assert int(response.headers["retry-after"]) >= 1
            # the gateway's own refusal: not a live service shedding (that marker is the service's)
            assert SHED_HEADER.lower() not in response.headers


async def test_breaker_opens_after_threshold_and_then_no_request_reaches_the_upstream(
    tmp_path: Path, alice: dict[str, str]
) -> None:
    async with live_tasks(tmp_path) as (url, tasks), \
            gateway(tasks_url=url, breaker_threshold=3, breaker_recovery_seconds=5.0) as client:
        assert (await client.post("/api/v1/tasks", json={"title": "warm"}, headers=alice)).status_code == 201
        tasks.fail_next(3, status=503)
        for _ in range(3):
            passed_through = await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice)
            # the service's own 503 reaches the client as it was sent
            assert_error_shape(passed_through, 503, "injected_failure")
            assert passed_through.headers["retry-after"] == "7"
        hits = tasks.count()

        for _ in range(5):
            fast = await client.get("/api/v1/tasks", headers=alice)
            body = assert_error_shape(fast, 503, "dependency_unavailable")
            assert "circuit open" in body["message"]
            assert body["details"] == {"dependency": "tasks"}
            assert 1 <= int(fast.headers["retry-after"]) <= 5  # what is left of the recovery window
        assert tasks.count() == hits  # nothing reached the service while the breaker was open
        health = (await client.get("/health")).json()
        assert health["checks"]["tasks"]["breaker"] == "opened"
        assert 'flotilla_circuit_breaker_state{upstream="tasks"} 2.0' in (await client.get("/metrics")).text

        # After the recovery window a trial request goes through and closes the breaker.
        async def serves() -> bool:
            return (await client.get("/api/v1/tasks", headers=alice)).status_code == 200

        await eventually(serves)
        assert (await client.get("/health")).json()["checks"]["tasks"]["breaker"] == "closed"


async def test_stopped_upstream_opens_the_breaker_and_recovery_follows_its_return(
    tmp_path: Path, alice: dict[str, str]
) -> None:
    async with live_tasks(tmp_path) as (url, _):
        pass  # started once to create its database, then stopped: its port is now closed
    async with gateway(tasks_url=url, breaker_threshold=3, breaker_recovery_seconds=5.0, retry_attempts=0) as client:
        refused = [await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice) for _ in range(3)]
        for response in refused:
            assert assert_error_shape(response, 503, "dependency_unavailable")["details"] == {"dependency": "tasks"}
        assert "circuit open" in (await client.get("/api/v1/tasks", headers=alice)).json()["message"]

        async with live_tasks(tmp_path, port=port_of(url)) as (_, tasks):
            async def serves() -> bool:
                return (await client.get("/api/v1/tasks", headers=alice)).status_code == 200

            await eventually(serves)
            created = await client.post("/api/v1/tasks", json={"title": "after"}, headers=alice)
            assert created.status_code == 201
            assert tasks.count("POST") == 1


async def test_reads_are_retried_on_transient_failures_writes_never(tmp_path: Path, alice: dict[str, str]) -> None:
    async with live_tasks(tmp_path) as (url, tasks), \
            gateway(tasks_url=url, retry_attempts=2, breaker_threshold=50) as client:
        tasks.fail_next(1, status=503)
        read = await client.get("/api/v1/tasks", headers=alice)
        assert read.status_code == 200
        assert tasks.count("GET") == 2  # one failure, one retry that succeeded

        tasks.fail_next(1, status=502)
        write = await client.post("/api/v1/tasks", json={"title": "once"}, headers=alice)
        assert_error_shape(write, 502, "injected_failure")
        assert tasks.count("POST") == 1  # never sent twice: a retry could create a second task

        tasks.fail_next(3, status=504)
        exhausted = await client.get("/api/v1/tasks", headers=alice)
        assert_error_shape(exhausted, 504, "injected_failure")
        assert tasks.count("GET") == 2 + 3  # first try plus two retries, then the last answer passes

        tasks.fail_next(1, status=500)
        bug = await client.get("/api/v1/tasks", headers=alice)
        assert bug.status_code == 500
        assert tasks.count("GET") == 6  # a 500 is one request's bug, not a flaky upstream: no retry


async def test_load_shed_answers_pass_through_without_opening_the_breaker(
    tmp_path: Path, alice: dict[str, str]
) -> None:
    """A service at capacity says so (503 + the shed marker); it is alive, so the breaker
    stays closed and the requests it can serve keep reaching it. Nor is a shed read retried."""
    async with live_tasks(tmp_path) as (url, tasks), gateway(tasks_url=url, breaker_threshold=2) as client:
        tasks.fail_next(4, status=503, headers={SHED_HEADER: "overloaded"})
        for _ in range(3):
            shed = await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice)
            assert_error_shape(shed, 503, "injected_failure")
            assert shed.headers["retry-after"] == "7"
        before = tasks.count("GET")
        assert_error_shape(await client.get("/api/v1/tasks", headers=alice), 503, "injected_failure")
        assert tasks.count("GET") == before + 1  # not retried
        assert (await client.post("/api/v1/tasks", json={"title": "served"}, headers=alice)).status_code == 201
        assert (await client.get("/health")).json()["checks"]["tasks"]["breaker"] == "closed"


async def test_client_and_application_errors_do_not_open_the_breaker(tmp_path: Path, alice: dict[str, str]) -> None:
    async with live_tasks(tmp_path) as (url, tasks), gateway(tasks_url=url, breaker_threshold=2) as client:
        tasks.fail_next(4, status=500)
        for _ in range(4):
            assert (await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice)).status_code == 500
        for _ in range(4):
            missing = await client.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000", headers=alice)
            assert missing.status_code == 404
        assert (await client.post("/api/v1/tasks", json={"title": "ok"}, headers=alice)).status_code == 201
        assert tasks.count() == 9


async def test_unresponsive_upstream_is_504_and_reads_are_not_retried(tmp_path: Path, alice: dict[str, str]) -> None:
    async with live_tasks(tmp_path) as (url, tasks), gateway(tasks_url=url, upstream_timeout_seconds=0.3) as client:
        tasks.hold_next(1)
        try:
            response = await client.get("/api/v1/tasks", headers=alice)
        finally:
            tasks.release()
        body = assert_error_shape(response, 504, "upstream_timeout")
        assert body["details"] == {"dependency": "tasks"}
        assert "retry-after" in response.headers
        # A slow service is not made slower by sending it the same read again.
        assert tasks.count("GET") == 1
        assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200


async def test_upstream_breaking_the_connection_is_502(tmp_path: Path, alice: dict[str, str]) -> None:
    async with live_tasks(tmp_path) as (url, tasks), gateway(tasks_url=url) as client:
        tasks.break_next(1)
        response = await client.get("/api/v1/tasks", headers=alice)
        assert assert_error_shape(response, 502, "bad_gateway")["details"] == {"dependency": "tasks"}
        assert "retry-after" in response.headers
        assert tasks.count("GET") == 1  # it may have acted on the request: not sent again
        assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200


async def test_gateway_answers_other_services_while_one_is_down(tmp_path: Path, alice: dict[str, str]) -> None:
    async with live_tasks(tmp_path) as (url, _), gateway(tasks_url=url, breaker_threshold=1) as client:
        assert (await client.get("/api/v1/users/me", headers=alice)).status_code == 503
        assert "circuit open" in (await client.get("/api/v1/users/me", headers=alice)).json()["message"]
        assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        report = (await client.get("/health")).json()
        assert report["status"] == "degraded"
        assert report["checks"]["users"] == {"status": "down", "critical": False, "error": "ClientConnectorError",
                                             "breaker": "opened"}
        assert report["checks"]["tasks"]["status"] == "up"



async def test_a_service_whose_database_is_down_keeps_its_breaker_closed_and_recovers_at_once(
    tmp_path: Path, alice: dict[str, str], own_postgres: PostgresServer, redis_server: RedisServer
) -> None:
    """tasks answers 503 for writes while PostgreSQL is down (it is alive and says so), serves
    cached reads meanwhile, and takes writes again as soon as PostgreSQL is back: no breaker
    recovery window in the gateway outlasting the outage."""
    database_url = own_postgres.create_database("tasks")
    async with live_tasks(tmp_path, database_url=database_url, redis_url=redis_server.url,
                          db_pool_timeout_seconds=1.0) as (url, _), \
            gateway(tasks_url=url, breaker_threshold=2, breaker_recovery_seconds=60.0) as client:
        assert (await client.post("/api/v1/tasks", json={"title": "kept"}, headers=alice)).status_code == 201
        assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200  # now cached

        own_postgres.stop()
        for _ in range(4):
            refused = await client.post("/api/v1/tasks", json={"title": "x"}, headers=alice)
            assert assert_error_shape(refused, 503, "dependency_unavailable")["details"] == {"dependency": "database"}
        cached = await client.get("/api/v1/tasks", headers=alice)
        assert cached.status_code == 200
        assert [t["title"] for t in cached.json()["data"]] == ["kept"]
        assert (await client.get("/health")).json()["checks"]["tasks"]["breaker"] == "closed"

        own_postgres.start()
        after = await client.post("/api/v1/tasks", json={"title": "after"}, headers=alice)
        assert after.status_code == 201, after.text
