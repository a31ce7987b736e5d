"""A minimal HTTP/1.1 keep-alive client over asyncio streams, for the open-loop generator.

One ``Connection`` is one TCP connection that sends prebuilt request bytes and reads one
response at a time (no pipelining). It parses only what a load generator needs: the
status code, ``Content-Length`` / chunked bodies, ``Connection: close`` and a few
headers. Failures are classified (``ErrorKind``) instead of raised as a zoo of
exceptions, so the report can count them by kind. Cheap by design: no per-request
objects beyond the response tuple, so thousands of connections cost the generator
little CPU.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum


class ErrorKind(StrEnum):
    CONNECT = "connect error"
    WRITE = "write error"
    READ = "read error"
    TIMEOUT = "timeout"


class RequestFailed(Exception):
    def __init__(self, kind: ErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else str(kind))
        self.kind = kind


@dataclass
class Response:
    status: int
    #: Lower-cased names of the headers a caller asked for (``Connection.wanted``).
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def build_request(method: str, host: str, path: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    """The raw bytes of one HTTP/1.1 request (built once, sent many times)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive connection; ``request()`` sends and reads one exchange."""

    def __init__(self, host: str, port: int, *, wanted: frozenset[str] = frozenset()) -> None:
        self.host, self.port = host, port
        self.wanted = wanted
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @property
    def open(self) -> bool:
        """Connected, and the server has not closed its side (an idle close shows as EOF)."""
        return self.reader is not None and not self.reader.at_eof()

    async def connect(self) -> None:
        try:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            self.reader = self.writer = None
            raise RequestFailed(ErrorKind.CONNECT, exc.strerror or type(exc).__name__) from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> Response:
        """Send ``raw``, read the response. The caller bounds the time (``asyncio.timeout``)."""
        if self.writer is None or self.reader is None:
            raise RequestFailed(ErrorKind.WRITE, "not connected")
        reader = self.reader
        try:
            self.writer.write(raw)
        except (OSError, RuntimeError) as exc:
            self.close()
            raise RequestFailed(ErrorKind.WRITE, str(exc)) from None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            response, length, chunked, close = self._parse_head(head)
            if chunked:
                response.body = await self._read_chunked(reader)
            elif length:
                response.body = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError) as exc:
            self.close()
            raise RequestFailed(ErrorKind.READ, type(exc).__name__) from None
        if close:
            self.close()
        return response

    def _parse_head(self, head: bytes) -> tuple[Response, int, bool, bool]:
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        response = Response(status)
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = value.lower() == "close"
            if name in self.wanted:
                response.headers[name] = value
        return response, length, chunked, close

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
