"""Issue 14 item 9: what registration reveals about which emails exist, and how fast.

Registration answers ``409`` for an email that already has an account. That is accepted
and documented (README, "Login limits, and what registration reveals"), not removed: a
sign-up form must tell a person they already have an account. What bounds it is the
per-address budget: every registration attempt spends it, a 409 as much as a 201, so a
probe of many emails from one address meets a 429 that tells nothing. Replayed against
the real auth app (SQLite, and PostgreSQL + Redis) with the shipped budget.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.auth.app import create_app
from services.auth.settings import AuthSettings
from tests.services.conftest import running
from tests.support.auth import PASSWORD, auth_settings, client_at, login, random_ip, register, unique_email
from tests.support.budgets import allowed_before_refusal
from tests.support.error_shape import assert_error_shape
from tests.support.login_limits import WRONG_PASSWORD, assert_throttled, attempt

README = Path(__file__).resolve().parents[2] / "README.md"
REGISTER = "/api/v1/auth/register"


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> AuthSettings:
    """The shipped budgets (only argon2's cost is lowered, as everywhere in the tests)."""
    return auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)


async def probe(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(REGISTER, json={"email": email, "password": WRONG_PASSWORD})


def test_the_409_is_documented_as_accepted() -> None:
    text = README.read_text()
    section = text[text.index("### Login limits, and what registration reveals"):]
    start = section.index("Registration answers `409`")
    paragraph = section[start:section.index("\n\n", start)]
    assert "This is accepted" in paragraph
    assert "per-address budget" in paragraph


async def test_an_existing_email_is_a_409_in_the_error_shape_that_changes_nothing(settings: AuthSettings) -> None:
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as owner, client_at(app, random_ip()) as prober:
        email = unique_email("taken")
        await register(owner, email)
        for candidate in (email, email.upper()):
            duplicate = await probe(prober, candidate)
            body = assert_error_shape(duplicate, 409, "conflict")
            assert body["details"] is None
            assert email not in duplicate.text.lower()
            assert WRONG_PASSWORD not in duplicate.text
        # The account is the owner's as before: the probe's password was not taken.
        assert (await login(owner, email))["access_token"]
        assert (await attempt(prober, email)).status_code == 401


async def test_probing_for_existing_emails_spends_the_per_address_budget(settings: AuthSettings) -> None:
    budget = allowed_before_refusal(settings.login_limit_per_ip)
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as owner, client_at(app, random_ip()) as prober, \
            client_at(app, random_ip()) as newcomer:
        email = unique_email("taken")
        await register(owner, email)
        for _ in range(budget):
            assert_error_shape(await probe(prober, email), 409, "conflict")
        # Spent: existing and unknown emails alike now get the same 429, which reveals nothing.
        assert_throttled(await probe(prober, email), "client")
        assert_throttled(await probe(prober, unique_email("unknown")), "client")
        # Another address is not affected.
        await register(newcomer, unique_email("newcomer"))
        assert (await login(owner, email, PASSWORD))["access_token"]
