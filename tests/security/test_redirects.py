"""Issue 14 item 11: no upstream address ever reaches a client.

``GET /api/v1/tasks/`` through the gateway used to answer ``307 location:
http://127.0.0.1:8003/api/v1/tasks``, naming the tasks service's own address. Replayed
through the real gateway in front of the real tasks service on a real socket: a trailing
slash is a 404 in the error shape, and a redirect an upstream does send reaches the
client as a path, never with the upstream's origin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.services.gateway_support import gateway, live_tasks
from tests.support.error_shape import assert_error_shape
from tests.support.live import Recorder
from tests.support.tokens import auth_header


@pytest.fixture
async def tasks(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder]]:
    async with live_tasks(tmp_path) as upstream:
        yield upstream


@pytest.fixture
async def client(tasks: tuple[str, Recorder]) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(tasks_url=tasks[0]) as client:
        yield client


@pytest.fixture
def caller() -> dict[str, str]:
    return auth_header("redirect-probe")


def assert_no_upstream_address(response: httpx.Response, upstream_url: str) -> None:
    host = upstream_url.removeprefix("http://")  # 127.0.0.1:<the upstream's port>
    assert all(host not in value for value in response.headers.values()), response.headers
    assert host not in response.text


async def test_trailing_slashes_are_404_in_the_error_shape_without_the_upstream_address(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder], caller: dict[str, str]
) -> None:
    url, _ = tasks
    for path in ("/api/v1/tasks/", "/api/v1/tasks/?limit=5", "/api/v1/tasks//"):
        response = await client.get(path, headers=caller)
        assert "location" not in response.headers, (path, response.headers)
        assert_error_shape(response, 404, "not_found")
        assert_no_upstream_address(response, url)


async def test_a_redirect_from_the_upstream_reaches_the_client_as_a_path(
    client: httpx.AsyncClient, tasks: tuple[str, Recorder], caller: dict[str, str]
) -> None:
    url, recorder = tasks
    recorder.fail_next(1, status=307, headers={"Location": f"{url}/api/v1/tasks?limit=5",
                                                "Content-Location": f"{url}/api/v1/tasks"})
    response = await client.get("/api/v1/tasks/", headers=caller)
    assert response.status_code == 307
    assert response.headers["location"] == "/api/v1/tasks?limit=5"
    assert response.headers["content-location"] == "/api/v1/tasks"
    assert_no_upstream_address(response, url)
