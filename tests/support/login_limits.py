"""Helpers for tests of auth's login budgets: a login attempt, and the 429 a spent budget answers."""

from __future__ import annotations

import httpx

from tests.support.auth import PASSWORD
from tests.support.error_shape import assert_error_shape

WRONG_PASSWORD = "wrong " + PASSWORD


async def attempt(client: httpx.AsyncClient, email: str, password: str = WRONG_PASSWORD) -> httpx.Response:
    """One login attempt, by default with a wrong password; the response as it came."""
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


def assert_throttled(response: httpx.Response, scope: str, *, window_seconds: int = 60) -> None:
    """429 in the error shape, naming the spent budget, with a Retry-After within its window."""
    body = assert_error_shape(response, 429, "rate_limited")
    assert body["details"] == {"scope": scope}
    assert 1 <= int(response.headers["retry-after"]) <= window_seconds
