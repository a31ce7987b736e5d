"""Issue 14 item 6: bounded request heads, a head read timeout, a connection cap, a body limit.

Against a real ``flotilla serve tasks`` process (uvloop + the limited httptools protocol,
as deployed), with raw sockets: what a hostile client sends is not what an HTTP client
library lets you send. Every refusal must be the one error shape.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.kit import catalog
from tests.support import tokens
from tests.support.error_shape import assert_error_shape
from tests.support.polling import eventually_sync
from tests.support.stack import ServiceProcess, lone_service

HEAD_TIMEOUT_SECONDS = 1.0
MAX_BODY_BYTES = 64 * 1024
#: Generous: a bound for a failing test on a loaded machine, never a timing assertion.
SOCKET_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    settings = {"header_read_timeout_seconds": str(HEAD_TIMEOUT_SECONDS), "max_body_bytes": str(MAX_BODY_BYTES)}
    with lone_service(catalog.TASKS, tmp_path_factory.mktemp("limits"), **settings) as process:
        yield process


def _read_response(sock: socket.socket) -> httpx.Response:
    """One response read off a raw socket (Content-Length framed, as every early answer is)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines)]
    length = int(next(value for name, value in headers if name.lower() == "content-length"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body[:length])


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def _exchange(port: int, raw: bytes) -> tuple[httpx.Response, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    # Answered and closed before all of it was sent: the answer is still there to read.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(raw)
    return _read_response(sock), sock


def _request(path: str = "/health/live", *headers: bytes) -> bytes:
    return b"".join([b"GET ", path.encode(), b" HTTP/1.1\r\nHost: tasks\r\n", *headers, b"\r\n"])


def test_a_normal_request_is_served(tasks: ServiceProcess) -> None:
    token = tokens.auth_header("alice")["Authorization"].encode()
    response, sock = _exchange(tasks.port, _request("/api/v1/tasks", b"Authorization: " + token + b"\r\n",
                                                    *(b"X-Extra-%d: value\r\n" % i for i in range(40))))
    sock.close()
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []


@pytest.mark.parametrize(("name", "size"), [(b"X-Big", 100_000), (b"Authorization", 1024 * 1024)])
def test_an_oversize_header_is_431_and_closed(tasks: ServiceProcess, name: bytes, size: int) -> None:
    response, sock = _exchange(tasks.port, _request("/health/live", name + b": " + b"a" * size + b"\r\n"))
    with sock:
        body = assert_error_shape(response, 431, "request_header_fields_too_large")
        assert body["details"] == {"max_header_bytes": 32 * 1024}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["connection"] == "close"
        assert _closed_by_server(sock)


def test_5000_headers_are_431(tasks: ServiceProcess) -> None:
    # 5 bytes each: 25,000 bytes is within the size limit, so this is the count limit.
    response, sock = _exchange(tasks.port, _request("/health/live", b"a:b\r\n" * 5000))
    with sock:
        body = assert_error_shape(response, 431, "request_header_fields_too_large")
        assert body["details"] == {"max_header_count": 100}
        assert _closed_by_server(sock)


def test_a_malformed_request_is_400_in_the_error_shape(tasks: ServiceProcess) -> None:
    response, sock = _exchange(tasks.port, b"NOT HTTP AT ALL\r\n\r\n")
    with sock:
        assert_error_shape(response, 400, "bad_request")


def test_a_head_dripped_slower_than_the_timeout_is_408_and_closed(tasks: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", tasks.port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: tasks\r\nX-Drip: ")
        sock.settimeout(HEAD_TIMEOUT_SECONDS / 5)
        for _ in range(200):  # one byte per fifth of the timeout: never a complete head
            try:
                sock.sendall(b"a")
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server answered
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(SOCKET_TIMEOUT)
        response = _read_response(sock)
        body = assert_error_shape(response, 408, "request_timeout")
        assert body["details"] == {"timeout_seconds": HEAD_TIMEOUT_SECONDS}
        assert _closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_408_and_closed(tasks: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", tasks.port), timeout=SOCKET_TIMEOUT) as sock:
        assert_error_shape(_read_response(sock), 408, "request_timeout")
        assert _closed_by_server(sock)


def test_an_oversize_body_is_413_declared_or_streamed(tasks: ServiceProcess) -> None:
    headers = tokens.auth_header("bob")
    with httpx.Client(base_url=tasks.url, timeout=SOCKET_TIMEOUT) as client:
        declared = client.post("/api/v1/tasks", headers=headers, content=b"x" * (MAX_BODY_BYTES + 1))
        body = assert_error_shape(declared, 413, "payload_too_large")
        assert body["details"] == {"max_bytes": MAX_BODY_BYTES}

        def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
            for _ in range(4):
                yield b"x" * (MAX_BODY_BYTES // 2)

        streamed = client.post("/api/v1/tasks", headers={**headers, "Content-Type": "application/json"},
                               content=chunks())
        assert_error_shape(streamed, 413, "payload_too_large")
        # The same connection (or a new one) still serves a normal request.
        assert client.post("/api/v1/tasks", headers=headers, json={"title": "small"}).status_code == 201


def test_a_huge_header_does_not_stall_other_clients(tasks: ServiceProcess) -> None:
    """The issue's 96 MiB header stalled the gateway for everyone; 16 MiB is enough to show it does not."""
    sent_some = threading.Event()
    outcome: dict[str, object] = {}

    def hostile() -> None:
        with socket.create_connection(("127.0.0.1", tasks.port), timeout=SOCKET_TIMEOUT) as sock:
            piece = b"a" * 65536
            try:
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: tasks\r\nX-Huge: ")
                for i in range(256):
                    sock.sendall(piece)
                    if i == 8:
                        sent_some.set()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped listening to it (lingering ended): expected
            finally:
                sent_some.set()
            try:
                outcome["status"] = _read_response(sock).status_code
            except (ConnectionError, TimeoutError) as exc:
                outcome["status"] = type(exc).__name__

    thread = threading.Thread(target=hostile)
    thread.start()
    try:
        assert sent_some.wait(SOCKET_TIMEOUT)
        with httpx.Client(base_url=tasks.url, timeout=SOCKET_TIMEOUT) as client:
            assert client.get("/health/live").status_code == 200  # answered while the hostile head arrives
    finally:
        thread.join(SOCKET_TIMEOUT)
    assert outcome["status"] in {431, "ConnectionResetError"}, outcome


def test_connections_beyond_the_cap_are_refused_at_once(tmp_path: Path) -> None:
    cap = 3
    held: list[socket.socket] = []
    with lone_service(catalog.TASKS, tmp_path, max_connections=str(cap), header_read_timeout_seconds="60") as process:
        def hold_one_more() -> bool:
            """A kept-alive connection that got a 200 (a leftover readiness poll may still count)."""
            response, sock = _exchange(process.port, _request())
            if response.status_code == 200:
                held.append(sock)
                return True
            sock.close()
            return False

        for _ in range(cap):
            eventually_sync(hold_one_more, message="a connection under the cap served")
        response, refused = _exchange(process.port, _request())
        with refused:
            assert_error_shape(response, 503, "overloaded")
            assert response.headers["retry-after"] == "1"
            assert response.headers["x-flotilla-shed"] == "overloaded"  # the gateway's breaker ignores it
            assert _closed_by_server(refused)
        # The held connections are still served, and closing one makes room for a new one.
        held[0].sendall(_request())
        assert _read_response(held[0]).status_code == 200
        held.pop().close()
        eventually_sync(hold_one_more, message="a connection served after another closed")
        for sock in held:
            sock.close()
