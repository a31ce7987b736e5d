"""The kit's bearer-JWT dependency, exercised through the tasks service."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.tasks.app import create_app
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.support.tokens import mint


@pytest.fixture
async def client(tmp_path: Path):
    settings = TasksSettings(**service_env("TASKS_", data_dir=tmp_path))
    async with running(create_app(settings)) as client:
        yield client


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _tokens() -> dict[str, str]:
    valid = mint("mallory")
    header, payload, _signature = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_payload = _b64({**claims, "sub": "alice"})
    other_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'test-key-1'})}.{payload}.",
        "expired": mint("mallory", ttl=-120),
        "wrong_audience": mint("mallory", audience="someone-else"),
        "wrong_issuer": mint("mallory", issuer="evil"),
        "unknown_kid": mint("mallory", kid="nope"),
        "tampered": f"{header}.{tampered_payload}.{_signature}",
        "signed_by_other_key": mint("mallory", key=other_key),
        "hs256_confusion": jwt.encode({**claims}, "s" * 32, algorithm="HS256", headers={"kid": "test-key-1"}),
        "rsa_unknown": jwt.encode({**claims}, rsa_key, algorithm="RS256", headers={"kid": "test-key-1"}),
        "refresh_typ": mint("mallory", typ="refresh"),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("kind", sorted(_tokens()))
async def test_bad_tokens_are_401(client: httpx.AsyncClient, kind: str) -> None:
    response = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {_tokens()[kind]}"})
    assert response.status_code == 401, (kind, response.text)
    assert response.json()["error_code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer    "])
async def test_missing_or_malformed_authorization_is_401(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error_code", "message", "details", "request_id"}


async def test_valid_token_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {mint('alice')}"})
    assert response.status_code == 200
