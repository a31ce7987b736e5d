"""Issue 14 item 2: a client's address is not whatever a header says.

The gateway believes forwarding headers only from configured proxies (none by default),
sends the services the address it resolved together with the forwarding token, and drops
any copy a client sent; a service believes that address only with the token. Replayed
on a real gateway process (uvicorn's proxy-header handling is part of what is proven),
on the gateway in front of a real tasks service, and on a real auth app.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.auth.app import create_app as create_auth_app
from services.kit import catalog
from services.kit.forwarding import CLIENT_HEADER, TOKEN_HEADER
from tests.services.conftest import running
from tests.services.gateway_support import gateway, live_tasks
from tests.support import tokens
from tests.support.auth import auth_settings, client_at, random_ip, unique_email
from tests.support.error_shape import assert_error_shape
from tests.support.live import Recorder
from tests.support.login_limits import WRONG_PASSWORD, assert_throttled
from tests.support.stack import ServiceProcess, lone_service

TOKEN = secrets.token_urlsafe(16)  # a random value, not an account or a bearer token


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A real gateway process, default trust (no proxies), 3 requests per address."""
    with lone_service(catalog.GATEWAY, tmp_path_factory.mktemp("addresses"), rate_limit_per_ip="3/minute") as process:
        yield process


def test_a_forwarded_for_header_does_not_buy_a_new_rate_limit_budget(limited_gateway: ServiceProcess) -> None:
    with httpx.Client(base_url=limited_gateway.url, timeout=30) as client:
        answers = [client.get("/api/v1/tasks", headers={"X-Forwarded-For": f"10.{n}.1.1",
                                                         "Forwarded": f"for=10.{n}.2.2", "X-Real-IP": f"10.{n}.3.3"})
                   for n in range(5)]
    assert [a.status_code for a in answers[:3]] == [401, 401, 401]  # no token, but counted against 127.0.0.1
    assert_error_shape(answers[3], 429, "rate_limited")


@pytest.fixture
async def tasks(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder]]:
    async with live_tasks(tmp_path) as upstream:
        yield upstream


async def test_the_gateway_vouches_for_the_address_it_saw_and_drops_what_the_client_claimed(
    tasks: tuple[str, Recorder],
) -> None:
    url, recorder = tasks
    forged = {"Authorization": tokens.auth_header("alice")["Authorization"], "X-Forwarded-For": "203.0.113.9",
              "X-Real-IP": "203.0.113.9", CLIENT_HEADER: "203.0.113.9", TOKEN_HEADER: "guessed"}
    async with gateway(tasks_url=url, forwarding_token=TOKEN) as client:
        assert (await client.get("/api/v1/tasks", headers=forged)).status_code == 200
    seen = recorder.last().headers
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the test client's address, once; no client-sent chain
    assert seen[CLIENT_HEADER] == "127.0.0.1"
    assert seen[TOKEN_HEADER] == TOKEN
    assert "x-real-ip" not in seen


async def test_auth_believes_the_client_header_only_with_the_forwarding_token(tmp_path: Path) -> None:
    settings = auth_settings(data_dir=tmp_path, forwarding_token=TOKEN, login_limit_per_ip="2/minute")
    app = create_auth_app(settings)
    email = unique_email("addresses")

    def claiming(client_ip: str, token: str) -> dict[str, str]:
        return {CLIENT_HEADER: client_ip, TOKEN_HEADER: token}

    async with running(app), client_at(app, random_ip()) as peer:
        # Without the token (another pod, a client reaching auth directly) every claim is
        # the peer's own address: one budget, spent after two attempts.
        for n in range(2):
            login = {"email": email, "password": WRONG_PASSWORD}
            response = await peer.post("/api/v1/auth/login", json=login, headers=claiming(f"198.51.100.{n}", "guessed"))
            assert response.status_code == 401
        assert_throttled(await peer.post("/api/v1/auth/login", json={"email": email, "password": WRONG_PASSWORD},
                                         headers=claiming("198.51.100.9", "guessed")), "client")
        # With it (the gateway): each client it vouches for has a budget of its own.
        for client_ip in ("203.0.113.1", "203.0.113.2"):
            response = await peer.post("/api/v1/auth/login", json={"email": email, "password": WRONG_PASSWORD},
                                       headers=claiming(client_ip, TOKEN))
            assert response.status_code == 401
