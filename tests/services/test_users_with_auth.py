"""A token that auth issues opens the caller's profile in users (keys exchanged as JWKS)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.kit.security import CREATED_AT_CLAIM, Principal
from services.users.app import create_app
from services.users.settings import UsersSettings
from tests.services.conftest import running, service_env
from tests.support.auth import auth_settings, login, register, running_auth, unique_email


async def test_users_accepts_tokens_issued_by_auth(tmp_path: Path) -> None:
    email = unique_email("Erin")
    async with running_auth(auth_settings(data_dir=tmp_path / "auth")) as auth:
        account = await register(auth, email)
        access_token = (await login(auth, email))["access_token"]
        jwks = (await auth.get("/.well-known/jwks.json")).text

    settings = UsersSettings(**{**service_env("USERS_", data_dir=tmp_path / "users"), "jwt_public_jwks": jwks})
    async with running(create_app(settings)) as users:
        response = await users.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access_token}"})
        assert response.status_code == 200, response.text
        profile = response.json()
        assert profile["id"] == account["id"]
        assert profile["email"] == email.lower()
        # The profile is dated by the registration, not by this first read (which came later:
        # a login, an argon2 hash, happened in between).
        assert profile["created_at"] == account["created_at"]


def test_a_token_without_a_sound_created_at_claim_dates_nothing() -> None:
    """Tokens issued before the claim, or with a junk or future one, fall back to first use."""
    assert Principal("u", {}).account_created_at() is None
    for junk in (12, "yesterday", "2026-01-15T09:30:00", "9999-01-01T00:00:00+00:00", "x" * 100):
        assert Principal("u", {CREATED_AT_CLAIM: junk}).account_created_at() is None, junk
    sound = Principal("u", {CREATED_AT_CLAIM: "2026-01-15T10:30:00+01:00"}).account_created_at()
    assert sound == datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
