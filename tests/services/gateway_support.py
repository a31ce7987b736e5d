"""Shared by the gateway tests: settings, and real upstreams served on real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.kit import catalog
from services.tasks.app import create_app as create_tasks_app
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.support.live import Recorder, serve_app
from tests.support.servers import free_port


def dead_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def gateway_settings(**overrides: Any) -> GatewaySettings:
    """Every upstream unreachable unless overridden; quick breaker recovery and backoff."""
    values: dict[str, Any] = {
        **service_env("GATEWAY_"),
        **{f"{backend.name}_url": dead_url() for backend in catalog.BACKENDS},
        "breaker_recovery_seconds": 1.0,
        "retry_backoff_seconds": 0.01,
        "retry_backoff_max_seconds": 0.05,
        **overrides,
    }
    return GatewaySettings(**values)


@asynccontextmanager
async def gateway(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(gateway_settings(**overrides))) as client:
        yield client


def tasks_app(data_dir: Path, **overrides: Any) -> Recorder:
    """The real tasks service (embedded SQLite), wrapped to count what reaches it."""
    return Recorder(create_tasks_app(TasksSettings(**service_env("TASKS_", data_dir=data_dir, **overrides))))


@asynccontextmanager
async def live_tasks(data_dir: Path, *, port: int = 0, **overrides: Any) -> AsyncIterator[tuple[str, Recorder]]:
    app = tasks_app(data_dir, **overrides)
    async with serve_app(app, port=port) as url:
        yield url, app


def assert_error_shape(response: httpx.Response, status: int, error_code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error_code", "message", "details", "request_id"}
    assert body["error_code"] == error_code, body
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 15.0) -> None:
    """Poll ``check`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"condition not met within {within}s"
        await asyncio.sleep(0.05)
