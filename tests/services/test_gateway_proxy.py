"""The gateway in front of the real tasks and auth services: routing, tokens, headers, body size."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.types import Message, Scope
from structlog.testing import capture_logs

from services.auth.app import create_app as create_auth_app
from services.gateway.app import create_app
from services.gateway.headers import client_response_headers
from services.gateway.settings import GatewaySettings
from services.gateway.state import PUBLIC_ROUTES
from services.kit import catalog
from tests.services.conftest import running
from tests.services.gateway_support import gateway, gateway_settings, live_tasks
from tests.support.auth import PASSWORD, auth_settings, unique_email
from tests.support.error_shape import assert_error_shape
from tests.support.live import Recorder, serve_app
from tests.support.tokens import TEST_KID, auth_header, mint


@pytest.fixture
async def tasks(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder]]:
    async with live_tasks(tmp_path) as upstream:
        yield upstream


@pytest.fixture
async def client(tasks: tuple[str, Recorder]) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(tasks_url=tasks[0], max_body_bytes=4096) as client:
        yield client


async def test_crud_through_the_gateway(client: httpx.AsyncClient, tasks: tuple[str, Recorder]) -> None:
    alice = auth_header("alice")
    created = await client.post("/api/v1/tasks", json={"title": "Ship it", "priority": "high"}, headers=alice)
    assert created.status_code == 201, created.text
    task = created.json()
    await client.post("/api/v1/tasks", json={"title": "later", "priority": "low"}, headers=alice)

    listing = await client.get("/api/v1/tasks", params={"priority": "high", "limit": 5}, headers=alice)
    assert listing.status_code == 200
    assert [t["id"] for t in listing.json()["data"]] == [task["id"]]
    assert listing.headers["x-cache"] in {"hit", "miss"}  # the service's own headers pass through

    patched = await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=alice)
    assert patched.json()["status"] == "done"
    assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)).status_code == 204
    # The service's own errors pass through untouched, in the one error shape.
    assert_error_shape(await client.get(f"/api/v1/tasks/{task['id']}", headers=alice), 404, "not_found")
    assert_error_shape(await client.post("/api/v1/tasks", json={"title": ""}, headers=alice), 422,
                       "validation_error")
    # Another user sees nothing of alice's (the service checks the same token again).
    bob = await client.get("/api/v1/tasks", headers=auth_header("bob"))
    assert bob.json()["data"] == []


async def test_forwarded_headers_and_hop_by_hop_filtering(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder]
) -> None:
    _, recorder = tasks
    headers = {**auth_header("alice"), "Connection": "keep-alive, x-connection-scoped", "X-Connection-Scoped": "1",
               "TE": "trailers", "Upgrade": "h2c", "Accept": "application/json", "X-Forwarded-For": "203.0.113.9"}
    response = await client.get("/api/v1/tasks?limit=3", headers=headers)
    assert response.status_code == 200
    seen = recorder.last()
    assert seen.path == "/api/v1/tasks"
    assert seen.headers["authorization"] == headers["Authorization"]
    assert seen.headers["accept"] == "application/json"
    for hop_by_hop in ("x-connection-scoped", "te", "upgrade"):
        assert hop_by_hop not in seen.headers
    # The gateway appends the address it saw, so the right-most entry is trustworthy.
    assert seen.headers["x-forwarded-for"] == "127.0.0.1"  # the address the gateway saw, not the client's claim
    assert seen.headers["x-forwarded-proto"] == "http"
    assert "transfer-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(response.content))


async def test_request_id_travels_to_the_service_and_back(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder]
) -> None:
    _, recorder = tasks
    given = await client.get("/api/v1/tasks", headers={**auth_header("alice"), "X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    assert recorder.last().headers["x-request-id"] == "trace-42"

    generated = await client.get("/api/v1/tasks", headers=auth_header("alice"))
    assert generated.headers["x-request-id"]
    assert recorder.last().headers["x-request-id"] == generated.headers["x-request-id"]


def _forged_tokens() -> dict[str, str]:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = mint("mallory")
    header, _, signature = token.split(".")
    tampered_payload = jwt.utils.base64url_encode(b'{"sub":"alice","iss":"x"}').decode()
    now = int(time.time())
    none_alg = jwt.encode({"sub": "alice", "iat": now, "exp": now + 60}, key="", algorithm="none",
                          headers={"kid": TEST_KID})
    return {
        "no token": "",
        "not a bearer": "Basic YWxpY2U6cHc=",
        "garbage": "Bearer nope",
        "tampered": f"Bearer {header}.{tampered_payload}.{signature}",
        "alg none": f"Bearer {none_alg}",
        "expired": f"Bearer {mint('alice', ttl=-120)}",
        "wrong audience": f"Bearer {mint('alice', audience='someone-else')}",
        "unknown key": f"Bearer {mint('alice', key=stranger, kid='stranger')}",
        "refresh token": f"Bearer {mint('alice', typ='refresh')}",
    }


async def test_bad_tokens_are_refused_at_the_edge(client: httpx.AsyncClient, tasks: tuple[str, Recorder]) -> None:
    _, recorder = tasks
    for case, authorization in _forged_tokens().items():
        headers = {"Authorization": authorization} if authorization else {}
        response = await client.post("/api/v1/tasks", json={"title": "x"}, headers=headers)
        body = assert_error_shape(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer"), case
        assert body["details"] is None, case
    assert recorder.count() == 0  # none of them reached the service


async def test_a_trailing_slash_is_404_and_never_reveals_the_upstream_address(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder]
) -> None:
    url, _ = tasks
    response = await client.get("/api/v1/tasks/", headers=auth_header("alice"))
    assert_error_shape(response, 404, "not_found")
    upstream_host = url.removeprefix("http://")
    assert all(upstream_host not in value for value in response.headers.values())
    # set once by the gateway, not once per hop
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


def test_locations_on_the_upstream_origin_become_paths() -> None:
    origin = b"http://10.1.2.3:8003"
    relayed = client_response_headers(
        [(b"Location", origin + b"/api/v1/tasks?x=1"), (b"Content-Location", origin),
         (b"Link", origin + b"/x")], keep_content_length=False, upstream_origin=origin)
    assert relayed == [(b"location", b"/api/v1/tasks?x=1"), (b"content-location", b"/"), (b"link", origin + b"/x")]
    elsewhere = [(b"location", b"https://example.com/login")]
    assert client_response_headers(elsewhere, keep_content_length=False, upstream_origin=origin) == elsewhere


async def test_unknown_paths_are_404_in_the_error_shape(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder]
) -> None:
    _, recorder = tasks
    for path in ("/nope", "/api/v1/tasksfoo", "/api/v2/tasks", "/api/v1"):
        assert_error_shape(await client.get(path, headers=auth_header("alice")), 404, "not_found")
    assert recorder.count() == 0


async def test_oversized_bodies_are_refused_before_the_service(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder]
) -> None:
    _, recorder = tasks
    alice = {**auth_header("alice"), "Content-Type": "application/json"}
    declared = await client.post("/api/v1/tasks", content=b"{" + b" " * 5000 + b"}", headers=alice)
    assert assert_error_shape(declared, 413, "payload_too_large")["details"] == {"max_bytes": 4096}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    chunked = await client.post("/api/v1/tasks", content=chunks(), headers=alice)
    assert "content-length" not in chunked.request.headers  # really sent chunked
    assert_error_shape(chunked, 413, "payload_too_large")
    # Anonymous oversized requests are refused for their size too, before any token check.
    assert_error_shape(await client.post("/api/v1/tasks", content=b" " * 5000), 413, "payload_too_large")
    assert recorder.count() == 0

    small = await client.post("/api/v1/tasks", content=b'{"title": "' + b"y" * 200 + b'"}', headers=alice)
    assert small.status_code == 201, small.text


async def test_auth_routes_through_the_gateway_with_the_real_auth_service(tmp_path: Path) -> None:
    auth = Recorder(create_auth_app(auth_settings(data_dir=tmp_path / "auth", jwt_public_jwks="")))
    async with serve_app(auth) as auth_url:
        jwks_url = f"{auth_url}/.well-known/jwks.json"
        # Gateway and tasks both learn auth's keys the production way: from its JWKS URL.
        keys_from_auth: dict[str, Any] = {"jwt_public_jwks": "", "jwks_url": jwks_url}
        async with (
            live_tasks(tmp_path / "tasks", **keys_from_auth) as (tasks_url, _),
            gateway(auth_url=auth_url, tasks_url=tasks_url, **keys_from_auth) as client,
        ):
            email = unique_email()
            registered = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert registered.status_code == 201, registered.text
            login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            tokens = login.json()
            jwks = await client.get("/.well-known/jwks.json")
            assert jwks.status_code == 200
            assert jwks.json()["keys"]

            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            created = await client.post("/api/v1/tasks", json={"title": "from a real token"}, headers=bearer)
            assert created.status_code == 201, created.text
            assert (await client.get("/api/v1/tasks", headers=bearer)).json()["count"] == 1

            refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            logout = await client.post("/api/v1/auth/logout",
                                       json={"refresh_token": refreshed.json()["refresh_token"]})
            assert logout.status_code in {200, 204}, logout.text

            seen_before = auth.count()
            # Any other auth route needs a token at the edge.
            assert_error_shape(await client.get("/api/v1/auth/anything-else"), 401, "unauthorized")
            assert_error_shape(await client.get("/api/v1/auth/login"), 401, "unauthorized")
            assert auth.count() == seen_before


def test_every_public_route_exists_in_the_auth_service(tmp_path: Path) -> None:
    paths = create_auth_app(auth_settings(data_dir=tmp_path)).openapi()["paths"]
    for method, path in PUBLIC_ROUTES:
        if method == "HEAD":
            continue  # FastAPI documents GET only
        assert method.lower() in paths.get(path, {}), (method, path)


def test_gateway_has_a_url_setting_for_every_backend() -> None:
    settings = GatewaySettings()
    for backend in catalog.BACKENDS:
        assert settings.upstream_url(backend.name) == f"http://127.0.0.1:{backend.local_port}"
    assert settings.jwks_url == f"http://127.0.0.1:{catalog.AUTH.local_port}/.well-known/jwks.json"
    assert GatewaySettings(auth_url="http://auth:8000").jwks_url == "http://auth:8000/.well-known/jwks.json"


async def test_a_client_leaving_mid_body_is_not_an_error(tasks: tuple[str, Recorder]) -> None:
    app = create_app(gateway_settings(tasks_url=tasks[0]))
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"ti', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/v1/tasks", "raw_path": b"/api/v1/tasks", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"authorization", auth_header("alice")["Authorization"].encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    async with running(app):
        with capture_logs() as logs:
            await app(scope, receive, send)
    events = [entry["event"] for entry in logs]
    assert "client_disconnected" in events
    assert "unhandled_exception" not in events
    assert sent[0]["status"] == 499  # recorded as the client's doing, not a 500
    assert tasks[1].count() == 0


async def test_proxied_requests_are_counted_under_their_route_template(client: httpx.AsyncClient) -> None:
    """The proxy runs outside FastAPI's routing; it still records the instrumentator's series,
    per upstream route template (bounded), or per prefix when no upstream answered."""
    alice = auth_header("alice")
    created = await client.post("/api/v1/tasks", json={"title": "count me"}, headers=alice)
    assert "x-flotilla-route" not in created.headers  # the label's source never reaches the client
    assert (await client.get("/api/v1/tasks", headers=alice)).status_code == 200
    assert (await client.get(f"/api/v1/tasks/{created.json()['id']}", headers=alice)).status_code == 200
    assert_error_shape(await client.get("/api/v1/tasks"), 401, "unauthorized")  # the gateway's own answer
    exposition = (await client.get("/metrics")).text
    assert 'http_requests_total{handler="/api/v1/tasks",method="GET",status="2xx"} 1.0' in exposition
    assert 'http_requests_total{handler="/api/v1/tasks",method="POST",status="2xx"} 1.0' in exposition
    assert 'http_requests_total{handler="/api/v1/tasks/{task_id}",method="GET",status="2xx"} 1.0' in exposition
    assert 'http_requests_total{handler="/api/v1/tasks{rest:path}",method="GET",status="4xx"} 1.0' in exposition
    assert ('http_request_duration_seconds_count{handler="/api/v1/tasks/{task_id}",method="GET",status="2xx"} 1.0'
            in exposition)
    assert 'flotilla_errors_total{error_code="unauthorized"} 1.0' in exposition


async def test_a_method_no_service_takes_is_405_in_the_error_shape(client: httpx.AsyncClient,
                                                                  tasks: tuple[str, Recorder]) -> None:
    response = await client.request("TRACE", "/api/v1/tasks", headers=auth_header("alice"))
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    assert tasks[1].count() == 0


async def test_a_path_only_sharing_a_prefix_is_the_gateways_404(client: httpx.AsyncClient,
                                                               tasks: tuple[str, Recorder]) -> None:
    assert_error_shape(await client.get("/api/v1/tasksfoo", headers=auth_header("alice")), 404, "not_found")
    assert tasks[1].count() == 0
