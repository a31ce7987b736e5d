"""A client that stalls mid-body gets 408 in the error shape; others keep being served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from services.tasks.app import create_app
from services.tasks.settings import TasksSettings
from tests.services.conftest import service_env
from tests.support.live import port_of, serve_app
from tests.support.tokens import mint


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return status, await reader.readexactly(length)


async def test_a_stalled_body_is_408_and_the_service_keeps_serving(tmp_path: Path) -> None:
    settings = TasksSettings(**service_env("TASKS_", data_dir=tmp_path, body_read_timeout_seconds=1.0))
    token = mint("alice")
    async with serve_app(create_app(settings)) as base_url:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base_url))
        writer.write(b"POST /api/v1/tasks HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"title\": ")
        await writer.drain()
        async with httpx.AsyncClient(base_url=base_url) as client:
            # While that client stalls, others are served.
            other = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
            assert other.status_code == 200
        status, body = await asyncio.wait_for(_read_response(reader), timeout=30)
        assert status == 408
        assert b'"error_code":"request_timeout"' in body.replace(b" ", b"")
        assert await asyncio.wait_for(reader.read(), timeout=30) == b""  # the server closed the connection
        writer.close()
        async with httpx.AsyncClient(base_url=base_url) as client:
            listing = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
        assert listing.json()["data"] == []  # nothing half-written was stored
