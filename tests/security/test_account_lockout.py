"""Issue 14, item 3: failed logins from anywhere must not lock the owner out of their account.

Replayed against a real auth app (PostgreSQL, Redis) with the shipped budgets: what an
attacker spends at one address stays at that address; only guessing from many addresses
reaches the per-account budget, and that budget outlasts what any one address may spend.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest

from services.auth.app import create_app
from services.auth.settings import AuthSettings
from tests.services.conftest import running
from tests.support.auth import PASSWORD, auth_settings, client_at, random_ip, register, unique_email
from tests.support.budgets import allowed_before_refusal, windows
from tests.support.login_limits import assert_throttled, attempt
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def settings(postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path) -> AuthSettings:
    """The shipped login budgets on the real servers, with a database of the test's own."""
    return auth_settings(database_url=postgres_server.create_database(f"lockout_{uuid.uuid4().hex[:12]}"),
                         redis_url=redis_server.url, data_dir=tmp_path)


async def test_failures_at_one_address_do_not_lock_the_owner_out_elsewhere(settings: AuthSettings) -> None:
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as attacker, client_at(app, random_ip()) as owner:
        email = unique_email("owner")
        await register(owner, email)
        for _ in range(allowed_before_refusal(settings.login_limit_per_account_and_ip)):
            assert (await attempt(attacker, email)).status_code == 401
        for _ in range(3):  # the attacker keeps going: before, each 429 renewed the lockout
            assert_throttled(await attempt(attacker, email), "account_client")

        assert (await attempt(owner, email, PASSWORD)).status_code == 200
        assert (await attempt(owner, email, PASSWORD)).status_code == 200


async def test_the_attackers_address_is_refused_beyond_its_budget_even_with_the_right_password(
    settings: AuthSettings,
) -> None:
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as attacker:
        email = unique_email("owner")
        await register(attacker, email)
        for _ in range(allowed_before_refusal(settings.login_limit_per_account_and_ip)):
            assert (await attempt(attacker, email)).status_code == 401
        assert_throttled(await attempt(attacker, email), "account_client")
        # The right password waits as well, or the answer would tell a good guess from a bad one.
        assert_throttled(await attempt(attacker, email, PASSWORD), "account_client")


async def test_guessing_from_many_addresses_meets_the_per_account_budget(settings: AuthSettings) -> None:
    per_account = allowed_before_refusal(settings.login_limit_per_account)
    per_address = allowed_before_refusal(settings.login_limit_per_account_and_ip)
    account_window = max(window.get_expiry() for window in windows(settings.login_limit_per_account))
    app = create_app(settings)
    async with running(app):
        email = unique_email("owner")
        async with client_at(app, random_ip()) as owner:
            await register(owner, email)
        spent = 0
        while spent < per_account:  # each address stays within its own budget
            async with client_at(app, random_ip()) as attacker:
                for _ in range(min(per_address, per_account - spent)):
                    assert (await attempt(attacker, email)).status_code == 401
                    spent += 1
        async with client_at(app, random_ip()) as attacker, client_at(app, random_ip()) as owner:
            assert_throttled(await attempt(attacker, email), "account", window_seconds=account_window)
            # The accepted trade-off (README, "Login limits"): the owner waits for this one too.
            assert_throttled(await attempt(owner, email, PASSWORD), "account", window_seconds=account_window)


def test_one_address_alone_cannot_spend_the_per_account_budget() -> None:
    """By default an address meets its own budget for an account before the account's is spent."""
    defaults = {name: str(AuthSettings.model_fields[name].default)
                for name in ("login_limit_per_account_and_ip", "login_limit_per_account", "login_limit_per_ip")}
    per_address = windows(defaults["login_limit_per_account_and_ip"]) + windows(defaults["login_limit_per_ip"])
    for account_window in windows(defaults["login_limit_per_account"]):
        # Within any span of T seconds, a moving window of P seconds admits at most ceil(T / P) fills.
        most_from_one_address = min(window.amount * math.ceil(account_window.get_expiry() / window.get_expiry())
                                    for window in per_address)
        assert most_from_one_address < account_window.amount, (account_window, defaults)
