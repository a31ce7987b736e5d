"""No secret reaches a log: every log line the stack wrote during the chaos suite (this
module runs last and adds a full account flow of its own) is scanned for passwords,
tokens and DSN passwords."""

from __future__ import annotations

import uuid

import pytest

from tests.chaos.conftest import REDIS_PASSWORD, log_dir
from tests.support.servers import PG_SUPERUSER_PASSWORD
from tests.support.stack import PASSWORD, Stack, bearer, gateway, register_and_login

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.redis]


def test_logs_hold_no_password_token_or_dsn_secret(calm_stack: Stack) -> None:
    password = f"secret-{uuid.uuid4().hex}"
    wrong_password = f"wrong-{uuid.uuid4().hex}"
    email = f"secrets-{uuid.uuid4().hex[:8]}@example.com"
    with gateway(calm_stack) as client:
        tokens = register_and_login(client, email, password=password)
        auth = bearer(tokens)
        assert client.post("/api/v1/tasks", json={"title": "t"}, headers=auth).status_code == 201
        assert client.post("/api/v1/auth/login", json={"email": email, "password": wrong_password}).status_code == 401
        assert client.post("/api/v1/auth/register", json={"email": email, "password": password}).status_code == 409
        assert client.post("/api/v1/auth/register",  # refused: too short; must not be echoed either
                           json={"email": f"x{email}", "password": "short-pw"}).status_code == 422
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
        # reuse of a rotated refresh token: the family is revoked (a logged security event)
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
        assert client.post("/api/v1/auth/logout", json={"refresh_token": refreshed["refresh_token"]}).status_code == 204
        assert client.get("/api/v1/tasks", headers={"Authorization": auth["Authorization"] + "x"}).status_code == 401

    secrets = {
        "password": password, "wrong password": wrong_password, "short password": "short-pw",
        "shared test password": PASSWORD,
        "access token": tokens["access_token"],
        "access token signature": tokens["access_token"].rsplit(".", 1)[1],
        "refresh token": tokens["refresh_token"], "rotated refresh token": refreshed["refresh_token"],
        "new access token": refreshed["access_token"],
        "PostgreSQL password": PG_SUPERUSER_PASSWORD, "Redis password": REDIS_PASSWORD,
    }
    logs = sorted(log_dir(calm_stack).glob("*.log"))
    assert {p.stem for p in logs} >= {s.name for s in calm_stack.services}
    scanned = 0
    leaks = []
    for path in logs:
        text = path.read_text(errors="replace")
        scanned += len(text.splitlines())
        leaks += [f"{path.name}: {what}" for what, secret in secrets.items() if secret in text]
    print(f"\n[chaos] secrets: {scanned} log lines from {len(logs)} services scanned for {len(secrets)} secrets; "
          f"leaks: {leaks or 'none'}")
    assert not leaks
