"""Issue 14 item 1: a registration flood does not take login down for everyone.

Concurrent anonymous registrations used to queue behind auth's password-hashing slots
until the gateway's upstream timeouts opened auth's breaker, and every login, refresh
and JWKS call then answered ``503 circuit open``. Replayed against the real auth service
on a real socket behind the real gateway:

* a flood from one address is throttled per address (429, the shipped budget);
* a flood from many addresses is shed at once by auth, past its bounded hashing queue:
  ``503 overloaded`` in the error shape with ``Retry-After`` and ``X-Flotilla-Shed``,
  passed through by the gateway without counting against auth's breaker;
* a valid login succeeds right after the flood, with auth's breaker still closed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.auth.app import create_app as create_auth_app
from services.gateway.app import create_app as create_gateway_app
from services.kit.errors import SHED_HEADER
from tests.services.conftest import running
from tests.services.gateway_support import gateway_settings
from tests.support.auth import PASSWORD, auth_settings, client_at, login, random_ip, register, unique_email
from tests.support.budgets import allowed_before_refusal
from tests.support.error_shape import assert_error_shape
from tests.support.live import serve_app
from tests.support.login_limits import assert_throttled

REGISTER = "/api/v1/auth/register"
#: Consecutive upstream failures that would open the gateway's breaker for auth: fewer
#: than the flood's shed answers, so counting them would open it.
BREAKER_THRESHOLD = 2
FLOOD = 12


async def registration(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(REGISTER, json={"email": unique_email("flood"), "password": PASSWORD})


async def test_a_flood_from_one_address_is_throttled_per_address(tmp_path: Path) -> None:
    settings = auth_settings(data_dir=tmp_path)  # the shipped budgets
    budget = allowed_before_refusal(settings.login_limit_per_ip)
    app = create_auth_app(settings)
    async with running(app), client_at(app, random_ip()) as flooding, client_at(app, random_ip()) as owner:
        answers = await asyncio.gather(*(registration(flooding) for _ in range(budget + 5)))
        assert sorted(a.status_code for a in answers) == [201] * budget + [429] * 5
        for refused in (a for a in answers if a.status_code == 429):
            assert_throttled(refused, "client")
        email = unique_email("owner")
        await register(owner, email)
        assert (await login(owner, email))["access_token"]


@pytest.fixture
async def gateway_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The gateway in front of a real auth service whose hashing is deliberately slow, with
    room for one hash and two waiting: however slow the machine, the flood arrives while
    the first hash still runs (everything slows alike). A pool of one database connection,
    which no request holds while it waits for or runs a hash."""
    forwarding_token = secrets.token_urlsafe(16)  # the gateway vouches for each client's address
    auth = create_auth_app(auth_settings(data_dir=tmp_path, password_hash_concurrency=1, password_hash_queue=2,
                                         db_pool_size=1, password_hash_time_cost=40,
                                         forwarding_token=forwarding_token))
    async with serve_app(auth) as auth_url:
        # A generous upstream timeout: what is proven is shedding, not a timeout race.
        app = create_gateway_app(gateway_settings(auth_url=auth_url, forwarding_token=forwarding_token,
                                                  breaker_threshold=BREAKER_THRESHOLD, upstream_timeout_seconds=60.0,
                                                  breaker_recovery_seconds=60.0))
        async with running(app):
            yield app


async def test_a_flood_from_many_addresses_is_shed_and_login_works_right_after(gateway_app: FastAPI) -> None:
    email = unique_email("owner")
    async with client_at(gateway_app, random_ip()) as owner:
        await register(owner, email)

    async def from_a_new_address() -> httpx.Response:
        async with client_at(gateway_app, random_ip()) as client:
            return await registration(client)

    answers = await asyncio.gather(*(from_a_new_address() for _ in range(FLOOD)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 503}, statuses
    assert statuses.count(503) > BREAKER_THRESHOLD, statuses  # enough to open the breaker, were they counted
    assert statuses.count(201) >= 3, statuses  # what was admitted (one hashing, two waiting) is served
    for shed in (a for a in answers if a.status_code == 503):
        body = assert_error_shape(shed, 503, "overloaded")
        assert body["details"] == {"resource": "password hashing"}
        assert int(shed.headers["retry-after"]) >= 1
        assert shed.headers[SHED_HEADER.lower()] == "overloaded"

    async with client_at(gateway_app, random_ip()) as owner:
        assert (await login(owner, email))["access_token"]
        jwks = await owner.get("/.well-known/jwks.json")
        assert jwks.status_code == 200
        assert jwks.json()["keys"]
        assert (await owner.get("/health")).json()["checks"]["auth"]["breaker"] == "closed"
