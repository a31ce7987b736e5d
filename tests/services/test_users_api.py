"""Users API: the caller's own profile, created on first use, cached, validated, isolated."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.users.app import create_app
from services.users.models import Profile
from services.users.settings import UsersSettings
from tests.services.conftest import running, service_env
from tests.support.error_shape import assert_error_shape
from tests.support.tokens import auth_header

ME = "/api/v1/users/me"


def users_settings(**values) -> UsersSettings:
    return UsersSettings(**service_env("USERS_", **values))


@pytest.fixture
def app(database_url: str, redis_url: str, tmp_path: Path):
    return create_app(users_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path))


@pytest.fixture
async def client(app):
    async with running(app) as client:
        yield client


@pytest.fixture
async def embedded_client(tmp_path: Path):
    """For request-validation cases, which never reach a database: SQLite keeps them quick."""
    async with running(create_app(users_settings(data_dir=tmp_path))) as client:
        yield client


def new_user(name: str) -> tuple[str, dict[str, str]]:
    user_id = str(uuid.uuid4())
    return user_id, auth_header(user_id, email=f"{name}-{user_id[:8]}@example.com")



async def test_profile_is_created_on_first_use_then_served_from_cache(client: httpx.AsyncClient) -> None:
    user_id, headers = new_user("alice")
    first = await client.get(ME, headers=headers)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "miss"
    profile = first.json()
    assert set(profile) == {"id", "email", "display_name", "bio", "created_at", "updated_at"}
    assert profile["id"] == user_id
    assert profile["email"] == f"alice-{user_id[:8]}@example.com"
    assert profile["display_name"] is None
    assert profile["bio"] is None

    second = await client.get(ME, headers=headers)
    assert second.headers["x-cache"] == "hit"
    assert second.json() == profile


async def test_patch_changes_the_profile_and_invalidates_the_cached_copy(client: httpx.AsyncClient) -> None:
    _, headers = new_user("alice")
    await client.get(ME, headers=headers)
    assert (await client.get(ME, headers=headers)).headers["x-cache"] == "hit"

    patched = await client.patch(ME, json={"display_name": "  Alice  ", "bio": "Ships things.\nOften."},
                                 headers=headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["display_name"] == "Alice"
    assert patched.json()["bio"] == "Ships things.\nOften."
    assert patched.json()["updated_at"] >= patched.json()["created_at"]

    fresh = await client.get(ME, headers=headers)
    assert fresh.headers["x-cache"] == "miss"
    assert fresh.json() == patched.json()
    assert (await client.get(ME, headers=headers)).headers["x-cache"] == "hit"


async def test_absent_fields_are_kept_and_null_clears(client: httpx.AsyncClient) -> None:
    _, headers = new_user("alice")
    await client.patch(ME, json={"display_name": "Alice", "bio": "hi"}, headers=headers)
    only_bio = (await client.patch(ME, json={"bio": "new"}, headers=headers)).json()
    assert (only_bio["display_name"], only_bio["bio"]) == ("Alice", "new")
    cleared = (await client.patch(ME, json={"bio": None}, headers=headers)).json()
    assert (cleared["display_name"], cleared["bio"]) == ("Alice", None)


async def test_patch_before_any_read_creates_the_profile(client: httpx.AsyncClient) -> None:
    user_id, headers = new_user("carol")
    patched = await client.patch(ME, json={"display_name": "Carol"}, headers=headers)
    assert patched.status_code == 200
    assert patched.json()["id"] == user_id
    assert (await client.get(ME, headers=headers)).json()["display_name"] == "Carol"


@pytest.mark.parametrize("body", [
    {"display_name": ""},
    {"display_name": "   "},
    {"display_name": "x" * 101},
    {"display_name": "two\nlines"},
    {"display_name": "nul\x00"},
    {"bio": "nul\x00byte"},
    {"bio": "x" * 2001},
    {"bio": 42},
    {"email": "someone@else.example"},
    {"id": "someone-else"},
])
async def test_invalid_updates_are_422(embedded_client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    _, headers = new_user("alice")
    response = await embedded_client.patch(ME, json=body, headers=headers)
    assert_error_shape(response, 422, "validation_error")


async def test_each_user_sees_and_changes_only_their_own_profile(client: httpx.AsyncClient) -> None:
    alice_id, alice = new_user("alice")
    bob_id, bob = new_user("bob")
    await client.patch(ME, json={"display_name": "Alice"}, headers=alice)
    await client.patch(ME, json={"display_name": "Bob"}, headers=bob)

    assert (await client.get(ME, headers=alice)).json()["display_name"] == "Alice"
    bobs = (await client.get(ME, headers=bob)).json()
    assert (bobs["id"], bobs["display_name"]) == (bob_id, "Bob")
    # No route names another user: neither reading nor writing someone else's profile exists.
    assert_error_shape(await client.get(f"/api/v1/users/{alice_id}", headers=bob), 404, "not_found")
    assert (await client.patch(f"/api/v1/users/{alice_id}", json={"display_name": "x"}, headers=bob)).status_code \
        in {404, 405}
    assert (await client.get(ME, headers=alice)).json()["display_name"] == "Alice"


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_anonymous_callers_are_401(embedded_client: httpx.AsyncClient, method: str) -> None:
    response = await embedded_client.request(method, ME, json={} if method == "PATCH" else None)
    assert_error_shape(response, 401, "unauthorized")


async def test_oversized_subject_is_401_not_a_database_error(embedded_client: httpx.AsyncClient) -> None:
    response = await embedded_client.get(ME, headers=auth_header("u" * 65))
    assert_error_shape(response, 401, "unauthorized")


async def test_concurrent_first_requests_create_one_profile(app) -> None:
    user_id, headers = new_user("dave")
    async with running(app) as client:
        responses = await asyncio.gather(*(client.get(ME, headers=headers) for _ in range(5)))
        assert [r.status_code for r in responses] == [200] * 5
        assert len({r.json()["created_at"] for r in responses}) == 1
        async with app.state.kit.database.session() as session:
            assert await session.scalar(select(func.count()).select_from(Profile).where(Profile.id == user_id)) == 1
