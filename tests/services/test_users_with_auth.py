"""A token that auth issues opens the caller's profile in users (keys exchanged as JWKS)."""

from __future__ import annotations

from pathlib import Path

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
