"""Auth API: register, login, refresh rotation, reuse detection, logout (PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from services.auth.app import create_app
from services.auth.models import RefreshToken, User
from services.auth.runtime import refresh_token_purger
from services.auth.tokens import hash_refresh_token
from services.kit.db import utcnow
from services.kit.errors import SHED_HEADER
from tests.services.conftest import running
from tests.support.auth import (
    PASSWORD,
    auth_settings,
    client_at,
    login,
    random_ip,
    register,
    running_auth,
    unique_email,
)
from tests.support.error_shape import assert_error_shape


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path):
    return auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
async def client(app):
    async with running(app), client_at(app, random_ip()) as client:
        yield client


@pytest.fixture
async def embedded_client(tmp_path: Path):
    """For request-validation cases, which never reach a database: SQLite keeps them quick."""
    async with running_auth(auth_settings(data_dir=tmp_path)) as client:
        yield client


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_register_login_refresh_logout(client: httpx.AsyncClient) -> None:
    email = unique_email("Alice")
    created = await register(client, email.upper())
    assert set(created) == {"id", "email", "created_at"}
    assert created["email"] == email.lower()
    uuid.UUID(created["id"])

    pair = await login(client, email.lower())
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900

    rotated = await refresh(client, pair["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != pair["refresh_token"]
    assert second["access_token"] != pair["access_token"]

    out = await client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert out.status_code == 204
    assert out.content == b""
    assert_error_shape(await refresh(client, second["refresh_token"]), 401, "unauthorized")
    again = await client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 204
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 204


async def test_duplicate_email_is_409_whatever_the_case(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    duplicate = await client.post("/api/v1/auth/register", json={"email": email.upper(), "password": PASSWORD + "!"})
    assert_error_shape(duplicate, 409, "conflict")


@pytest.mark.parametrize("body", [
    {"email": "a@example.com", "password": "hunter2"},
    {"email": "a@example.com", "password": "x" * 1025},
    {"email": "a@example.com", "password": "twelve chars\x00plus"},
    {"email": "not-an-email", "password": PASSWORD},
    {"email": "a@example.com"},
    {"email": "a@example.com", "password": PASSWORD, "is_admin": True},
])
async def test_registration_validation_is_422_without_echoing_input(embedded_client: httpx.AsyncClient,
                                                                    body: dict[str, Any]) -> None:
    response = await embedded_client.post("/api/v1/auth/register", json=body)
    details = assert_error_shape(response, 422, "validation_error")["details"]
    assert details["errors"]
    if body.get("password"):
        assert body["password"] not in response.text


async def test_wrong_password_and_unknown_email_are_the_same_401(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    wrong_password = await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong " + PASSWORD})
    unknown_user = await client.post("/api/v1/auth/login", json={"email": unique_email(), "password": PASSWORD})
    for response in (wrong_password, unknown_user):
        assert_error_shape(response, 401, "unauthorized")

    def comparable(response: httpx.Response) -> tuple[Any, ...]:
        body = {k: v for k, v in response.json().items() if k != "request_id"}
        headers = {k: v for k, v in response.headers.items() if k not in {"x-request-id", "content-length"}}
        return response.status_code, body, headers

    assert comparable(wrong_password) == comparable(unknown_user)


async def test_only_an_argon2_hash_is_stored_and_login_upgrades_old_parameters(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    email = unique_email()
    async with running_auth(auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)) as c:
        await register(c, email)

    stronger = auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                             password_hash_time_cost=2)
    app = create_app(stronger)
    async with running(app), client_at(app, random_ip()) as client:
        async with app.state.kit.database.session() as session:
            before = await session.scalar(select(User.password_hash).where(User.email == email))
        assert before.startswith("$argon2id$")
        assert ",t=1," in before
        assert PASSWORD not in before

        await login(client, email)
        async with app.state.kit.database.session() as session:
            after = await session.scalar(select(User.password_hash).where(User.email == email))
        assert after.startswith("$argon2id$")
        assert ",t=2," in after
        await login(client, email)  # the upgraded hash verifies too


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    first = await login(client, email)
    other_login = await login(client, email)  # another device: a separate family

    second = (await refresh(client, first["refresh_token"])).json()
    third = (await refresh(client, second["refresh_token"])).json()

    # The stolen first token comes back: refused, and the thief's and the client's
    # descendants of it are revoked alike.
    assert_error_shape(await refresh(client, first["refresh_token"]), 401, "unauthorized")
    assert_error_shape(await refresh(client, third["refresh_token"]), 401, "unauthorized")
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_with_one_token_let_exactly_one_through(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    pair = await login(client, email)
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert (await refresh(client, winner["refresh_token"])).status_code == 401  # family revoked by the losers


async def test_logout_revokes_every_token_of_the_login(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    first = await login(client, email)
    second = (await refresh(client, first["refresh_token"])).json()
    assert (await client.post("/api/v1/auth/logout", json={"refresh_token": first["refresh_token"]})).status_code == 204
    assert_error_shape(await refresh(client, second["refresh_token"]), 401, "unauthorized")


async def test_expired_refresh_token_is_401(app, client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    pair = await login(client, email)
    async with app.state.kit.database.session() as session:
        await session.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    assert_error_shape(await refresh(client, pair["refresh_token"]), 401, "unauthorized")


async def test_the_purge_removes_only_long_expired_refresh_tokens(app, client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    old, recent, live = [await login(client, email) for _ in range(3)]
    ages = {old["refresh_token"]: timedelta(days=3), recent["refresh_token"]: timedelta(hours=1)}
    async with app.state.kit.database.session() as session:
        for token, age in ages.items():
            await session.execute(update(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(token))
                                  .values(expires_at=utcnow() - age))
        await session.commit()

    await refresh_token_purger(app.state.kit)()

    async with app.state.kit.database.session() as session:
        kept = set(await session.scalars(select(RefreshToken.token_hash)))
    assert hash_refresh_token(old["refresh_token"]) not in kept  # expired past the slack: purged
    assert hash_refresh_token(recent["refresh_token"]) in kept  # expired within the slack: kept
    assert hash_refresh_token(live["refresh_token"]) in kept
    assert (await refresh(client, live["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_hashed(app, client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    pair = await login(client, email)
    async with app.state.kit.database.session() as session:
        stored = list(await session.scalars(select(RefreshToken.token_hash)))
    assert len(stored) == 1
    assert pair["refresh_token"] not in stored[0]
    assert len(stored[0]) == 64


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": "x" * 300}])
async def test_malformed_refresh_requests_are_422(embedded_client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_error_shape(await embedded_client.post("/api/v1/auth/refresh", json=body), 422, "validation_error")


async def test_a_burst_beyond_hashing_capacity_is_shed_fast_and_the_rest_served(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Past the bounded queue, 503 + Retry-After at once (marked as shed); what was admitted
    completes, and afterwards the service serves logins as before. A pool of one
    connection: requests must not hold it while they wait for or run a hash (else the
    burst would queue at the pool and never reach the hashing queue's bound)."""
    # A deliberately slow hash (many passes): the twelve requests are all admitted or shed
    # while the first one still hashes, however slow the machine (everything slows alike).
    settings = auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path,
                             password_hash_concurrency=1, password_hash_queue=2, db_pool_size=1,
                             password_hash_time_cost=40, login_limit_per_ip="1000/minute")
    async with running_auth(settings) as client:
        email = unique_email()
        await register(client, email)
        burst = await asyncio.gather(*(client.post("/api/v1/auth/register", json={"email": unique_email(),
                                                                                    "password": PASSWORD})
                                       for _ in range(12)))
        statuses = [r.status_code for r in burst]
        assert set(statuses) <= {201, 503}
        assert 3 <= statuses.count(201) < 12  # at least the admitted ones: one hashing, two waiting
        for shed in (r for r in burst if r.status_code == 503):
            body = assert_error_shape(shed, 503, "overloaded")
            assert body["details"] == {"resource": "password hashing"}
            assert shed.headers["retry-after"] == "1"
            assert shed.headers[SHED_HEADER.lower()] == "overloaded"
        assert (await login(client, email))["access_token"]


async def test_token_answers_are_never_cached_and_every_answer_carries_security_headers(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(client, email)
    logged_in = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    refreshed = await refresh(client, logged_in.json()["refresh_token"])
    for response in (logged_in, refreshed):
        assert response.headers["cache-control"] == "no-store"
    not_found = await client.get("/api/v1/auth/nothing")
    for response in (logged_in, refreshed, not_found, await client.get("/health/live")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
