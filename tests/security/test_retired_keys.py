"""Issue 14 item 8: a retired signing key stops being trusted without a restart.

The services' token verifier (``services/kit/security.py``) used to only ever add the
keys it fetched from auth's JWKS, so a key auth had retired (say, a leaked one) kept
verifying tokens until every service restarted. Replayed with the real auth service on
a real socket, publishing keys from its Secret, and the real tasks service fetching them
from auth's JWKS URL, as deployed: an attacker holding the leaked private key forges
tokens; while the key is published (the rotation's grace period) they verify, and once
the Secret no longer lists it, the next JWKS refresh makes every new token signed with it
a 401 in the error shape, while tokens from the remaining key keep working.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.auth.app import create_app as create_auth_app
from services.auth.key_material import LoadedKey, new_key, private_jwks
from tests.services.conftest import running
from tests.support.auth import auth_settings, login, register, unique_email
from tests.support.error_shape import assert_error_shape
from tests.support.events import tasks_app
from tests.support.live import serve_app
from tests.support.servers import free_port
from tests.support.tokens import mint

TASKS = "/api/v1/tasks"


@asynccontextmanager
async def auth_publishing(data_dir: Path, port: int, *keys: LoadedKey) -> AsyncIterator[httpx.AsyncClient]:
    """Auth on ``port`` with ``keys`` in its Secret (the first signs); a client of it."""
    app = create_auth_app(auth_settings(data_dir=data_dir, signing_keys=private_jwks(*keys)))
    async with serve_app(app, port=port) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


def refetching_on_every_new_token(app: FastAPI) -> None:
    """The verifier's clock, not its logic: refetch the JWKS for every token it has not
    verified yet, instead of after the minutes a deployment waits between refreshes."""
    verifier = app.state.kit.verifier
    verifier.refresh_interval = 0.0
    verifier.max_age = 0.0


def forged(key: LoadedKey, user_id: str) -> dict[str, str]:
    """A fresh token (its own jti, so never one the verifier has already checked)."""
    return {"Authorization": f"Bearer {mint(user_id, kid=key.kid, key=key.private_key, jti=uuid.uuid4().hex)}"}


@pytest.fixture
def auth_port() -> int:
    return free_port()


async def test_tokens_of_a_key_retired_from_the_jwks_are_refused_at_the_next_refresh(
    tmp_path: Path, auth_port: int
) -> None:
    active, leaked = new_key("ES256"), new_key("ES256")
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    tasks = tasks_app(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}", data_dir=tmp_path / "tasks",
                      jwt_public_jwks="", jwks_url=f"http://127.0.0.1:{auth_port}/.well-known/jwks.json")
    async with running(tasks) as client:
        refetching_on_every_new_token(tasks)

        # The grace period of a rotation: the previous key is still published, so its tokens verify.
        async with auth_publishing(tmp_path / "auth", auth_port, active, leaked) as auth:
            assert {k["kid"] for k in (await auth.get("/.well-known/jwks.json")).json()["keys"]} == {
                active.kid, leaked.kid}
            assert (await client.get(TASKS, headers=forged(leaked, victim))).status_code == 200
            email = unique_email("owner")
            await register(auth, email)

        # The Secret is updated to retire the leaked key; auth restarts on the same address.
        async with auth_publishing(tmp_path / "auth", auth_port, active) as auth:
            assert [k["kid"] for k in (await auth.get("/.well-known/jwks.json")).json()["keys"]] == [active.kid]
            for _ in range(2):
                refused = await client.get(TASKS, headers=forged(leaked, victim))
                body = assert_error_shape(refused, 401, "unauthorized")
                assert "unknown key" in body["message"]
            created = await client.post(TASKS, json={"title": "forged"}, headers=forged(leaked, victim))
            assert_error_shape(created, 401, "unauthorized")

            # The key that remains keeps working: a token auth signs now verifies.
            owner = {"Authorization": f"Bearer {(await login(auth, email))['access_token']}"}
            assert (await client.get(TASKS, headers=owner)).status_code == 200
