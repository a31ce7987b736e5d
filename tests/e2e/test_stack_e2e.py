"""End to end through the gateway, every service in its own process."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from services.kit import catalog
from services.launcher import Stack, free_port, free_port_offset
from tests.e2e.conftest import bearer, gateway, register_and_login
from tests.support.error_shape import assert_error_shape
from tests.support.polling import eventually_sync


def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def test_embedded_stack_serves_health_and_rejects_anonymous(embedded_stack: Stack) -> None:
    assert embedded_stack.dependencies_down() == {}  # nothing for the banner to warn about
    with gateway(embedded_stack) as client:
        assert client.get("/health/ready").status_code == 200
        # The full report and the metrics are on the metrics port only, never the public one.
        for private in ("/health", "/metrics"):
            assert_error_shape(client.get(private), 404, "not_found")
        report = httpx.get(f"{embedded_stack.metrics_url(catalog.GATEWAY)}/health", timeout=10)
        assert report.json()["status"] in {"healthy", "degraded"}
        metrics_port = httpx.get(f"{embedded_stack.metrics_url(catalog.GATEWAY)}/metrics", timeout=10)
        assert "http_requests_total" in metrics_port.text
        assert_error_shape(httpx.get(f"{embedded_stack.metrics_url(catalog.GATEWAY)}/api/v1/tasks", timeout=10),
                           404, "not_found")  # and the metrics port serves nothing else
        anonymous = client.get("/api/v1/tasks")
        assert anonymous.status_code == 401
        assert set(anonymous.json()) == {"error_code", "message", "details", "request_id"}
        # the embedded stack is the whole product: the README example works on it
        tokens = register_and_login(client, email())
        created = client.post("/api/v1/tasks", json={"title": "Ship it", "priority": "high"}, headers=bearer(tokens))
        assert created.status_code == 201
        listing = client.get("/api/v1/tasks", headers=bearer(tokens)).json()
        assert [t["title"] for t in listing["data"]] == ["Ship it"]
        stats = eventually_sync(lambda: (s := client.get("/api/v1/stats/me", headers=bearer(tokens)).json())
                                and s.get("created") == 1 and s)
        assert stats["created"] == 1


def test_full_flow_on_real_servers(real_stack: Stack) -> None:
    with gateway(real_stack) as client:
        tokens = register_and_login(client, email())
        auth = bearer(tokens)
        me = client.get("/api/v1/users/me", headers=auth)
        assert me.status_code == 200
        user_id = me.json()["id"]

        ids = []
        for title, priority in [("write docs", "low"), ("fix prod", "high"), ("review", "medium")]:
            response = client.post("/api/v1/tasks", json={"title": title, "priority": priority}, headers=auth)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        assert client.patch(f"/api/v1/tasks/{ids[0]}", json={"status": "done"}, headers=auth).status_code == 200
        listing = client.get("/api/v1/tasks", params={"limit": 2}, headers=auth).json()
        assert len(listing["data"]) == 2
        assert listing["next_cursor"]

        stats = eventually_sync(lambda: (s := client.get("/api/v1/stats/me", headers=auth).json())
                                and s.get("created") == 3 and s.get("done") == 1 and s)
        assert stats["open"] == 2

        recs = client.get(f"/api/v1/recommendations/{user_id}", headers=auth)
        assert recs.status_code == 200
        body = recs.json()
        assert body["fallback"] is False
        assert body["source"] == "personalised"
        assert body["recommendations"]

        # refresh rotates; reusing the old refresh token revokes the whole family
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        new_tokens = refreshed.json()
        assert new_tokens["refresh_token"] != tokens["refresh_token"]
        reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert reuse.status_code == 401
        family_gone = client.post("/api/v1/auth/refresh", json={"refresh_token": new_tokens["refresh_token"]})
        assert family_gone.status_code == 401

        # logout revokes
        fresh = client.post("/api/v1/auth/login", json={"email": me.json()["email"],
                                                         "password": "correct-horse-battery-staple"}).json()
        assert client.post("/api/v1/auth/logout", json={"refresh_token": fresh["refresh_token"]}).status_code == 204
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 401


def test_users_are_isolated_on_every_resource(real_stack: Stack) -> None:
    with gateway(real_stack) as client:
        alice, bob = register_and_login(client, email()), register_and_login(client, email())
        alice_id = client.get("/api/v1/users/me", headers=bearer(alice)).json()["id"]
        task = client.post("/api/v1/tasks", json={"title": "alice only"}, headers=bearer(alice)).json()

        assert client.get(f"/api/v1/tasks/{task['id']}", headers=bearer(bob)).status_code == 404
        assert client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "x"}, headers=bearer(bob)).status_code == 404
        assert client.delete(f"/api/v1/tasks/{task['id']}", headers=bearer(bob)).status_code == 404
        assert client.get("/api/v1/tasks", headers=bearer(bob)).json()["data"] == []
        assert client.get("/api/v1/users/me", headers=bearer(bob)).json()["id"] != alice_id
        other_recs = client.get(f"/api/v1/recommendations/{alice_id}", headers=bearer(bob))
        assert other_recs.status_code == 403
        assert other_recs.json()["error_code"] == "forbidden"
        assert client.get("/api/v1/stats/me", headers=bearer(bob)).json().get("created", 0) == 0


def test_data_service_outage_loses_no_events(real_stack: Stack) -> None:
    with gateway(real_stack) as client:
        tokens = register_and_login(client, email())
        auth = bearer(tokens)
        real_stack.stop_one(catalog.DATA)
        for i in range(20):
            assert client.post("/api/v1/tasks", json={"title": f"while data is down {i}"},
                               headers=auth).status_code == 201
        real_stack.start_one(catalog.DATA)
        real_stack.wait_ready(services=[catalog.DATA])
        stats = eventually_sync(lambda: (s := client.get("/api/v1/stats/me", headers=auth).json())
                                and s.get("created") == 20 and s)
        assert stats["created"] == 20  # none lost, none counted twice


def test_tasks_outage_opens_the_gateway_breaker_then_recovers(real_stack: Stack) -> None:
    with gateway(real_stack) as client:
        auth = bearer(register_and_login(client, email()))
        real_stack.stop_one(catalog.TASKS)
        statuses = [client.get("/api/v1/tasks", headers=auth) for _ in range(8)]
        assert {r.status_code for r in statuses} == {503}
        assert all("retry-after" in r.headers for r in statuses)
        assert statuses[-1].json()["error_code"] == "dependency_unavailable"
        real_stack.start_one(catalog.TASKS)
        real_stack.wait_ready(services=[catalog.TASKS])
        eventually_sync(lambda: client.get("/api/v1/tasks", headers=auth).status_code == 200, within=60, interval=0.5)


def test_redis_outage_keeps_everything_serving(real_stack: Stack, redis_server) -> None:
    with gateway(real_stack) as client:
        auth = bearer(register_and_login(client, email()))
        client.post("/api/v1/tasks", json={"title": "before"}, headers=auth)
        redis_server.stop()
        try:
            for _ in range(5):
                assert client.get("/api/v1/tasks", headers=auth).status_code == 200
            assert client.post("/api/v1/tasks", json={"title": "during"}, headers=auth).status_code == 201
            assert client.get("/api/v1/users/me", headers=auth).status_code == 200
        finally:
            redis_server.start()
        stats = eventually_sync(lambda: (s := client.get("/api/v1/stats/me", headers=auth).json())
                                and s.get("created") == 2 and s)
        assert stats["created"] == 2


def test_security_edge_cases_through_the_gateway(real_stack: Stack) -> None:
    with gateway(real_stack) as client:
        auth = bearer(register_and_login(client, email()))
        big = client.post("/api/v1/tasks", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                          headers={**auth, "content-type": "application/json"})
        assert big.status_code == 413
        assert big.json()["error_code"]
        for header in ({"Authorization": "Bearer nope"}, {}):
            assert client.get("/api/v1/tasks", headers=header).status_code == 401
        r = httpx.get(f"{real_stack.url(catalog.GATEWAY)}/openapi.json", timeout=10)
        paths = r.json()["paths"]
        for prefix in ("/api/v1/auth/login", "/api/v1/tasks", "/api/v1/users/me", "/api/v1/stats/me"):
            assert any(p.startswith(prefix) for p in paths), prefix


def test_an_unreachable_redis_is_reported_at_start(tmp_path: Path) -> None:
    """The stack still starts (it degrades), and `flotilla up`'s banner has what to warn about."""
    stack = Stack(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0", port_offset=free_port_offset(),
                  extra_env={"GATEWAY_REDIS_TIMEOUT_SECONDS": "0.2"})
    with stack.running(timeout=90):
        down = stack.dependencies_down()
    assert set(down) == {"redis"}
    assert "tasks" in down["redis"]
