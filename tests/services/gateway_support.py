"""Shared by the gateway tests: settings, and real upstreams served on real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
    """Every upstream unreachable unless overridden; quick backoff, and a breaker recovery window
    long enough that a slow machine does not see an open breaker half-open before it looks
    (the first window too: tests of the short growing one set it themselves)."""
    values: dict[str, Any] = {
        **service_env("GATEWAY_"),
        **{f"{backend.name}_url": dead_url() for backend in catalog.BACKENDS},
        "breaker_recovery_seconds": 5.0,
        "breaker_first_recovery_seconds": 5.0,
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
