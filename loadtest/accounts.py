"""The benchmark's users: registered and logged in through the stack, with tasks of their own.

Tokens are real access tokens from auth (register + login through the gateway), the way
a client gets them; nothing is minted around the stack. Each user gets a full page of
tasks and more (``SEED_ROWS``), so every list read returns 20 rows and a cursor, the
same page the uncached baseline (6) reads.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import httpx

from loadtest.baselines import SEED_ROWS

TASKS_PATH = "/api/v1/tasks"
#: Registrations in flight at once: auth hashes each password (argon2), so a burst
#: larger than its hashing pool only queues.
REGISTER_CONCURRENCY = 4
SEED_CONCURRENCY = 16


async def _account(client: httpx.AsyncClient, entry_url: str) -> str:
    credentials = {"email": f"bench-{secrets.token_hex(8)}@example.com", "password": secrets.token_urlsafe(16)}
    (await client.post(f"{entry_url}/api/v1/auth/register", json=credentials)).raise_for_status()
    login = await client.post(f"{entry_url}/api/v1/auth/login", json=credentials)
    login.raise_for_status()
    return str(login.json()["access_token"])


async def _seed_tasks(client: httpx.AsyncClient, tasks_url: str, token: str, rows: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for i in range(rows):
        (await client.post(f"{tasks_url}{TASKS_PATH}", headers=headers,
                           json={"title": f"bench task {i}", "priority": "high"})).raise_for_status()


async def _bench_users(entry_url: str, tasks_url: str, count: int, rows: int) -> list[str]:
    registering = asyncio.Semaphore(REGISTER_CONCURRENCY)
    seeding = asyncio.Semaphore(SEED_CONCURRENCY)
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def one() -> str:
            async with registering:
                token = await _account(client, entry_url)
            async with seeding:
                await _seed_tasks(client, tasks_url, token, rows)
            return token

        return list(await asyncio.gather(*(one() for _ in range(count))))


def bench_users(entry_url: str, tasks_url: str, count: int, *, rows: int = SEED_ROWS) -> list[str]:
    """``count`` new accounts (through ``entry_url``), each with ``rows`` tasks; their access tokens."""
    return asyncio.run(_bench_users(entry_url, tasks_url, count, rows))


def bench_user(entry_url: str, tasks_url: str) -> tuple[str, str]:
    """One account with its tasks and a warm cache; returns (token, X-Cache of a repeat GET).

    ``FLOTILLA_LOADTEST_TOKEN`` supplies the token instead of registering an account.
    """
    token = os.environ.get("FLOTILLA_LOADTEST_TOKEN", "")
    if token:
        asyncio.run(_seed_with(tasks_url, token))
    else:
        token = bench_users(entry_url, tasks_url, 1)[0]
    with httpx.Client(timeout=30.0) as client:
        headers = {"Authorization": f"Bearer {token}"}
        client.get(f"{tasks_url}{TASKS_PATH}", headers=headers).raise_for_status()
        again = client.get(f"{tasks_url}{TASKS_PATH}", headers=headers)
        again.raise_for_status()
        return token, again.headers.get("x-cache", "?")


async def _seed_with(tasks_url: str, token: str) -> None:
    async with httpx.AsyncClient(timeout=30.0) as client:
        await _seed_tasks(client, tasks_url, token, SEED_ROWS)
