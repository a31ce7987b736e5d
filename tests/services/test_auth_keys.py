"""Signing keys: JWKS contents, verification by the kit, rotation, persistence, Secret-supplied keys."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from services.auth import key_store
from services.auth.app import MIGRATIONS, create_app
from services.auth.key_material import new_key, private_jwks
from services.auth.models import SigningKey
from services.auth.runtime import auth_runtime
from services.kit.db import Database
from services.kit.errors import Unauthorized
from services.kit.migrations import upgrade
from services.kit.security import TokenVerifier
from services.kit.settings import DEV_AUDIENCE, DEV_ISSUER
from tests.services.conftest import running
from tests.support.auth import auth_settings, client_at, login, random_ip, register, unique_email
from tests.support.servers import PostgresServer


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path):
    return auth_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)


def verifier(jwks: dict[str, Any]) -> TokenVerifier:
    return TokenVerifier(issuer=DEV_ISSUER, audience=DEV_AUDIENCE, jwks_json=json.dumps(jwks))


async def access_token_for(client: httpx.AsyncClient) -> tuple[str, str]:
    email = unique_email()
    user = await register(client, email)
    return (await login(client, email))["access_token"], user["id"]


async def test_jwks_publishes_public_keys_that_the_kit_verifier_accepts(settings) -> None:
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as client:
        response = await client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=300"
        jwks = response.json()
        [key] = jwks["keys"]
        assert {key["kty"], key["crv"], key["alg"], key["use"]} == {"EC", "P-256", "ES256", "sig"}
        assert "d" not in key
        assert key["kid"]

        token, user_id = await access_token_for(client)
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256"
        assert header["kid"] == key["kid"]

        principal = await verifier(jwks).verify(token)
        assert principal.user_id == user_id
        claims = principal.claims
        assert claims["typ"] == "access"
        assert claims["email"].endswith("@example.com")
        assert claims["exp"] - claims["iat"] == 900
        assert claims["jti"]

        # The way other services get the keys: fetched from the JWKS URL.
        over_http = TokenVerifier(issuer=DEV_ISSUER, audience=DEV_AUDIENCE, jwks_url="http://testserver/.well-known/jwks.json",
                                  http=client)
        assert (await over_http.verify(token)).user_id == user_id


async def test_rotation_keeps_earlier_tokens_valid_until_their_key_is_retired(settings) -> None:
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as client:
        old_token, _ = await access_token_for(client)
        old_kid = jwt.get_unverified_header(old_token)["kid"]

        new_kid = await auth_runtime(app.state.kit).keys.rotate()
        assert new_kid != old_kid
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}

        new_token, _ = await access_token_for(client)
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        after_rotation = verifier(jwks)
        await after_rotation.verify(old_token)
        await after_rotation.verify(new_token)

        # A service fetching the JWKS over HTTP, which has seen (and trusts) both keys.
        fetching = TokenVerifier(issuer=DEV_ISSUER, audience=DEV_AUDIENCE, http=client, max_age=0,
                                 refresh_interval=0, jwks_url="http://testserver/.well-known/jwks.json")
        await fetching.verify(new_token)

        # Retiring at once (a leaked key) unpublishes the old key: its tokens stop verifying,
        # also for a verifier that trusted it before, at its next JWKS fetch, without a restart.
        async with app.state.kit.database.session() as session:
            newest = await key_store.rotate_signing_key(session=session, algorithm="ES256",
                                                        retire_previous_after=timedelta(0))
        await auth_runtime(app.state.kit).keys.reload()
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [k["kid"] for k in jwks["keys"]] == [newest]
        with pytest.raises(Unauthorized):
            await verifier(jwks).verify(old_token)
        with pytest.raises(Unauthorized):
            await fetching.verify(old_token)


async def test_generated_keys_survive_a_restart(settings) -> None:
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as client:
        token, user_id = await access_token_for(client)
        first_jwks = (await client.get("/.well-known/jwks.json")).json()
    restarted = create_app(settings)
    async with running(restarted), client_at(restarted, random_ip()) as client:
        assert (await client.get("/.well-known/jwks.json")).json() == first_jwks
        assert (await verifier(first_jwks).verify(token)).user_id == user_id


@pytest.mark.postgres
async def test_replicas_starting_together_generate_one_key(postgres_server: PostgresServer, tmp_path: Path) -> None:
    settings = auth_settings(database_url=postgres_server.create_database(f"keys_race_{uuid.uuid4().hex[:8]}"),
                             data_dir=tmp_path)
    databases = [Database(settings) for _ in range(4)]
    try:
        await upgrade(databases[0], service="auth", script_location=MIGRATIONS)

        async def ensure(db: Database) -> None:
            async with db.session() as session:
                await key_store.ensure_signing_key(session=session, algorithm="ES256")

        await asyncio.gather(*(ensure(db) for db in databases))
        async with databases[0].session() as session:
            assert await session.scalar(select(func.count()).select_from(SigningKey)) == 1
    finally:
        for db in databases:
            await db.dispose()


async def test_keys_from_the_secret_sign_first_and_all_are_published(tmp_path: Path) -> None:
    active, previous = new_key("ES256"), new_key("RS256")
    settings = auth_settings(data_dir=tmp_path, signing_keys=private_jwks(active, previous))
    app = create_app(settings)
    async with running(app), client_at(app, random_ip()) as client:
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [(k["kid"], k["alg"]) for k in jwks["keys"]] == [(active.kid, "ES256"), (previous.kid, "RS256")]
        assert all("d" not in k and "p" not in k for k in jwks["keys"])
        token, _ = await access_token_for(client)
        assert jwt.get_unverified_header(token)["kid"] == active.kid
        await verifier(jwks).verify(token)
        # A token the previous key signed (before the Secret was updated) still verifies.
        await verifier(jwks).verify(previous.sign({"sub": "u", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
                                                   "iat": 1, "exp": 2**31, "typ": "access"}))
        async with app.state.kit.database.session() as session:
            assert await session.scalar(select(func.count()).select_from(SigningKey)) == 0
        with pytest.raises(RuntimeError, match="AUTH_SIGNING_KEYS"):
            await auth_runtime(app.state.kit).keys.rotate()


async def test_rs256_keys_can_be_generated(tmp_path: Path) -> None:
    app = create_app(auth_settings(data_dir=tmp_path, signing_algorithm="RS256"))
    async with running(app), client_at(app, random_ip()) as client:
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [(k["kty"], k["alg"]) for k in jwks["keys"]] == [("RSA", "RS256")]
        token, user_id = await access_token_for(client)
        assert (await verifier(jwks).verify(token)).user_id == user_id


def _public_only_jwks() -> str:
    jwks = json.loads(private_jwks(new_key("ES256")))
    jwks["keys"][0].pop("d")
    return json.dumps(jwks)


@pytest.mark.parametrize(("document", "problem"), [
    ('{"keys": []}', "has no keys"),
    (_public_only_jwks(), "not a private key"),
])
async def test_unusable_secret_keys_fail_start_up(tmp_path: Path, document: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        async with running(create_app(auth_settings(data_dir=tmp_path, signing_keys=document))):
            pass
