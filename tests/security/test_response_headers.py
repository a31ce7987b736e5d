"""Issue 14 item 12 (headers): token answers are never cached; JSON answers are not sniffed,
load nothing and are not framed.

Through the real gateway in front of the real auth and tasks services on real sockets,
and on the services' own ports (reachable inside a cluster): login and refresh carry
``Cache-Control: no-store``; every JSON answer, successes and errors in the error shape
alike, carries ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy of
``default-src 'none'``, each once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth.app import create_app as create_auth_app
from tests.services.gateway_support import gateway, live_tasks
from tests.support.auth import PASSWORD, auth_settings, unique_email
from tests.support.error_shape import assert_error_shape
from tests.support.live import serve_app
from tests.support.login_limits import WRONG_PASSWORD

CSP = "default-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The same stack reached through the gateway, and on auth's and tasks' own ports."""

    gateway: httpx.AsyncClient
    auth: httpx.AsyncClient
    tasks: httpx.AsyncClient


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Endpoints]:
    async with serve_app(create_auth_app(auth_settings(data_dir=tmp_path / "auth", jwt_public_jwks=""))) as auth_url:
        keys_from_auth: dict[str, Any] = {"jwt_public_jwks": "", "jwks_url": f"{auth_url}/.well-known/jwks.json"}
        async with (
            live_tasks(tmp_path / "tasks", **keys_from_auth) as (tasks_url, _),
            gateway(auth_url=auth_url, tasks_url=tasks_url, **keys_from_auth) as through_gateway,
            httpx.AsyncClient(base_url=auth_url, timeout=30) as auth,
            httpx.AsyncClient(base_url=tasks_url, timeout=30) as tasks,
        ):
            yield Endpoints(through_gateway, auth, tasks)


def assert_json_security_headers(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], response.headers
    [policy] = response.headers.get_list("content-security-policy")
    assert policy == CSP


def assert_not_cached(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers.get_list("cache-control") == ["no-store"], response.headers
    assert response.headers["pragma"] == "no-cache"


async def test_token_answers_are_never_cached(stack: Endpoints) -> None:
    for client in (stack.gateway, stack.auth):
        email = unique_email("headers")
        credentials = {"email": email, "password": PASSWORD}
        assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201
        logged_in = await client.post("/api/v1/auth/login", json=credentials)
        assert_not_cached(logged_in)
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": logged_in.json()["refresh_token"]})
        assert_not_cached(refreshed)
        assert_json_security_headers(logged_in)
        assert_json_security_headers(refreshed)


async def test_json_answers_carry_nosniff_and_a_restrictive_csp(stack: Endpoints) -> None:
    email = unique_email("headers")
    credentials = {"email": email, "password": PASSWORD}
    registered = await stack.gateway.post("/api/v1/auth/register", json=credentials)
    assert registered.status_code == 201
    token = (await stack.gateway.post("/api/v1/auth/login", json=credentials)).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    answers = [registered]
    for client in (stack.gateway, stack.tasks):
        created = await client.post("/api/v1/tasks", json={"title": "headers"}, headers=bearer)
        assert created.status_code == 201, created.text
        listed = await client.get("/api/v1/tasks", headers=bearer)
        assert listed.status_code == 200
        answers += [created, listed]
        for response, status, code in (
            (await client.get("/api/v1/tasks"), 401, "unauthorized"),
            (await client.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000", headers=bearer), 404,
             "not_found"),
            (await client.post("/api/v1/tasks", json={"title": ""}, headers=bearer), 422, "validation_error"),
        ):
            assert_error_shape(response, status, code)
            answers.append(response)
    answers.append(await stack.auth.post("/api/v1/auth/login", json={"email": email, "password": WRONG_PASSWORD}))
    assert_error_shape(answers[-1], 401, "unauthorized")
    for response in answers:
        assert_json_security_headers(response)
