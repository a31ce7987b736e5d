"""`python -m loadtest connections` at a tiny size, against real PostgreSQL and Redis.

Behaviour only: every connection opened and was verified, the open-loop window sent
its scheduled requests over them and every one was answered, and the report has its
figures (latency percentiles, CPU per process, the generator apart). No timing
thresholds: how fast is the load test's business, not a test's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.connections import connections_mode
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

CONNECTIONS = 200


@pytest.mark.usefixtures("wrk")
def test_open_loop_over_many_connections_reports_every_request(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    summary = connections_mode(connections=CONNECTIONS, seconds=2, users=3, capacity_seconds=1,
                               database_url=postgres_server.dsn(), redis_url=redis_server.url, out_dir=tmp_path)

    conns, reqs = summary["connections"], summary["requests"]
    assert conns["target"] == CONNECTIONS
    assert conns["established"] == CONNECTIONS
    assert conns["failed"] == 0
    assert summary["capacity"]["rps"] > 0
    assert reqs["scheduled"] > 0
    assert reqs["sent"] == reqs["scheduled"]
    assert reqs["ok"] + reqs["errors"] == reqs["sent"]
    assert set(summary["latency"]) == {"p50_ms", "p95_ms", "p99_ms", "max_ms", "send_lag_p99_ms", "send_lag_max_ms"}
    assert summary["latency"]["p50_ms"] is not None
    assert set(summary["cpu_ms_per_request"]) >= {"gateway", "tasks", "redis", "postgres"}
    assert summary["generator_cpu_ms_per_request"] > 0
    assert set(summary["target"]) == {"zero_errors", "p99_below_1s"}
    assert json.loads((tmp_path / "connections.json").read_text())["connections"]["target"] == CONNECTIONS


def test_raw_client_parses_content_length_and_chunked_bodies() -> None:
    import asyncio

    from loadtest.rawhttp import Connection, build_request

    async def scenario() -> list[tuple[int, bytes, str]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache: hit\r\n\r\nok")
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = Connection("127.0.0.1", port, wanted=frozenset({"x-cache"}))
        await conn.connect()
        raw = build_request("GET", f"127.0.0.1:{port}", "/")
        out = []
        for _ in range(2):
            response = await conn.request(raw)
            out.append((response.status, response.body, response.headers.get("x-cache", "")))
        conn.close()
        server.close()
        return out

    assert asyncio.run(scenario()) == [(200, b"ok", "hit"), (404, b"abc", "")]
