"""Helpers for tests that run the auth service in-process."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.auth.app import create_app
from services.auth.settings import AuthSettings
from tests.services.conftest import running, service_env

#: argon2 at its cheapest allowed cost: the tests check behaviour, not hash strength.
FAST_ARGON2: dict[str, Any] = {"password_hash_time_cost": 1, "password_hash_memory_kib": 8192,
                               "password_hash_parallelism": 1}
PASSWORD = "correct horse battery staple"


def auth_settings(*, database_url: str = "", redis_url: str = "", data_dir: Path | None = None,
                  **overrides: Any) -> AuthSettings:
    return AuthSettings(**service_env("AUTH_", database_url=database_url, redis_url=redis_url, data_dir=data_dir,
                                      **{**FAST_ARGON2, **overrides}))


def unique_email(name: str = "user") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


def random_ip() -> str:
    # A fresh client address per test: login windows in the session-wide Redis are
    # keyed by address, and must not carry over from one test to the next. From the OS's
    # randomness, not ``random``: pytest-randomly re-seeds ``random`` identically before
    # every test, which would hand every test the same "fresh" address.
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def client_at(app: FastAPI, ip: str) -> httpx.AsyncClient:
    """A client of an already running ``app`` whose requests come from address ``ip``."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
                             base_url="http://testserver")


@asynccontextmanager
async def running_auth(settings: AuthSettings, *, ip: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with running(app), client_at(app, ip or random_ip()) as client:
        yield client


async def register(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())
