"""Issue 14 item 4: nobody forges task events into the data service.

``POST /internal/v1/events`` once took a public development token from the code and let
anyone on data's port write any user's stats and recommendations. Replayed against the
real data app (SQLite, and PostgreSQL + Redis): without a configured token the endpoint
is refused whatever is sent; with one, only that token is taken; there is no built-in
token to configure by default, and `flotilla up` makes a new one per run.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.data.app import create_app as create_data_app
from services.data.settings import DataSettings
from services.kit import catalog
from services.kit.events import INGEST_PATH, INTERNAL_TOKEN_HEADER
from services.launcher import Stack
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.support.data_client import ingest
from tests.support.error_shape import assert_error_shape
from tests.support.events import INTERNAL_TOKEN, data_app, event
from tests.support.tokens import auth_header

#: The development token the code used to ship, public since then.
FORMER_BUILT_IN_TOKEN = "dev-only-internal-token-not-a-secret"


@pytest.fixture
def victim() -> str:
    return f"victim-{uuid.uuid4().hex[:8]}"


def forgeries(victim: str) -> list[dict[str, str]]:
    """Every header an attacker might try: none, empty, the former built-in token, a guess,
    and the victim's own bearer token."""
    return [{}, {INTERNAL_TOKEN_HEADER: ""}, {INTERNAL_TOKEN_HEADER: FORMER_BUILT_IN_TOKEN},
            {INTERNAL_TOKEN_HEADER: secrets.token_urlsafe(24)}, auth_header(victim)]


async def created_count(client: httpx.AsyncClient, user: str) -> int:
    response = await client.get("/api/v1/stats/me", headers=auth_header(user))
    assert response.status_code == 200, response.text
    return int(response.json()["created"])


@pytest.fixture
def no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_INTERNAL_TOKEN", "TASKS_INTERNAL_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def unconfigured(database_url: str, redis_url: str, tmp_path: Path,
                       no_token_in_the_environment: None) -> AsyncIterator[httpx.AsyncClient]:
    """The data service as it starts when nobody set DATA_INTERNAL_TOKEN: its settings'
    own default, whatever that is."""
    settings = DataSettings(**service_env("DATA_", database_url=database_url, redis_url=redis_url,
                                          data_dir=tmp_path))
    async with running(create_data_app(settings)) as client:
        yield client


@pytest.fixture
async def configured(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The data service with the token its tasks service shares (INTERNAL_TOKEN)."""
    async with running(data_app(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)) as client:
        yield client


async def test_without_a_configured_token_the_ingest_is_refused(unconfigured: httpx.AsyncClient,
                                                                victim: str) -> None:
    body = {"events": [event(victim, title="FREE CREDITS at example.com")]}
    for headers in [*forgeries(victim), {INTERNAL_TOKEN_HEADER: INTERNAL_TOKEN}]:
        assert_error_shape(await unconfigured.post(INGEST_PATH, json=body, headers=headers), 404, "not_found")
    assert await created_count(unconfigured, victim) == 0


async def test_with_a_configured_token_only_that_token_is_taken(configured: httpx.AsyncClient, victim: str) -> None:
    body = {"events": [event(victim, title="FREE CREDITS at example.com")]}
    for headers in forgeries(victim):
        assert_error_shape(await configured.post(INGEST_PATH, json=body, headers=headers), 401, "unauthorized")
    assert await created_count(configured, victim) == 0
    # The endpoint itself works: the configured token is taken.
    assert (await ingest(configured, event(victim)))["applied"] == 1
    assert await created_count(configured, victim) == 1


def test_there_is_no_built_in_token_and_each_flotilla_up_run_makes_its_own(no_token_in_the_environment: None) -> None:
    for environment in ("development", "test"):  # production also demands its database URLs
        assert DataSettings(environment=environment).internal_token.get_secret_value() == ""
        assert TasksSettings(environment=environment).internal_token.get_secret_value() == ""
        assert not DataSettings(environment=environment).ingest_enabled
    first, second = Stack(), Stack()
    assert first.internal_token != second.internal_token
    assert len(first.internal_token) >= 32
    assert FORMER_BUILT_IN_TOKEN not in (first.internal_token, second.internal_token)
    assert first.env_for(catalog.DATA)["DATA_INTERNAL_TOKEN"] == first.internal_token
