"""Limits on the request head and on connections, in the server protocol (uvicorn + httptools).

Hand-rolled because uvicorn (0.54) offers none of them for httptools, the protocol we run
for its CPU per request: llhttp has no header size limit, and httptools joins the pieces
of a header that arrives in several reads with ``bytes +=`` (a 96 MiB header is quadratic
copying on the event loop, stalling every client of the process); there is no header
count limit; no timer runs until a first response is sent, so a connection that never
finishes its head stays open forever; and ``limit_concurrency`` accepts every connection,
then answers text/plain 503s on it. h11's ``h11_max_incomplete_event_size`` bounds the
size only (as a 400) and costs more CPU per request (numbers in docs/perf/http-limits.md).

``LimitedHttpToolsProtocol`` adds, at the cost of a few attribute updates per request:

* head size: bytes read while a request head is incomplete are counted before the parser
  sees them; past ``max_header_bytes`` the rest is never parsed (431). The count restarts
  when a message ends, so the next pipelined head read in the same chunk can exceed the
  limit by at most one read (256 KiB), which still stops the growth;
* header count: checked once, when the head is complete (431);
* head read time: from connecting, or from the first byte of a following request, to the
  end of the head (408). One lazy timer per connection rather than one per request;
* connections: beyond ``max_connections`` a new connection is answered 503 at once.

Every early answer is the one error shape (JSON, a fresh request id) with
``connection: close``; the connection then lingers: reads are dropped until the client
closes or ``LINGER_SECONDS`` pass. Closing with unread input would reset the connection,
and the client could lose the answer before reading it (nginx's lingering_close).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from services.kit.errors import (
    BadRequest,
    FlotillaError,
    Overloaded,
    RequestHeadTimeout,
    RequestHeadTooLarge,
    error_body,
)
from services.kit.middleware import JSON_SECURITY_HEADERS, SECURITY_HEADERS
from services.kit.settings import ServiceSettings

log = structlog.get_logger("flotilla.http")

#: After an early answer, how long the client may keep sending before the connection is reset.
LINGER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    header_read_timeout_seconds: float = 30.0
    max_connections: int = 16_384

    @classmethod
    def of(cls, settings: ServiceSettings) -> HttpLimits:
        return cls(max_header_bytes=settings.max_header_bytes, max_header_count=settings.max_header_count,
                   header_read_timeout_seconds=settings.header_read_timeout_seconds,
                   max_connections=settings.max_connections)


def raw_error_response(error: FlotillaError) -> bytes:
    """A whole HTTP/1.1 response in the error shape, for answers the app never sees."""
    request_id = uuid.uuid4().hex
    body = error_body(error.error_code, error.message, error.details, request_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), (b"x-request-id", request_id.encode()), *SECURITY_HEADERS,
               *JSON_SECURITY_HEADERS,
               *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items())]
    return b"".join([STATUS_LINE[error.status_code], *(k + b": " + v + b"\r\n" for k, v in headers), b"\r\n", body])


class _Lingering(asyncio.Protocol):
    """Drops what the client still sends after an early answer, until it closes or time is up."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = loop.call_later(LINGER_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


def answer_and_linger(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, error: FlotillaError) -> None:
    if transport.is_closing():
        return
    transport.write(raw_error_response(error))
    transport.set_protocol(_Lingering(transport, loop))
    if transport.can_write_eof():
        transport.write_eof()  # sent after the answer is flushed
        if not transport.is_reading():
            transport.resume_reading()  # uvicorn may have paused it (flow control)
    else:  # TLS: no half-close
        transport.close()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; bound to settings by ``protocol_with``."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    #: Called with the error code of each early answer (a metrics counter).
    on_refusal: ClassVar[Callable[[str], None] | None] = None

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head_bytes = self.limits.max_header_bytes
        self._max_header_count = self.limits.max_header_count
        self._head_timeout = self.limits.header_read_timeout_seconds
        #: Between the end of a message and the end of the next head: head bytes are counted.
        self._head_open = True
        self._head_bytes = 0
        #: When the current head started (loop time), None while no head is pending.
        self._head_since: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: FlotillaError | None = None

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self.client = get_remote_addr(transport)
            self._refuse(Overloaded("connections"))  # never registered: it does not count
            return
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    # Head size and read time

    def data_received(self, data: bytes | memoryview) -> None:
        if self._head_open:
            seen = self._head_bytes + len(data)
            if seen > self._max_head_bytes:
                self._receive_past_head_budget(data)
                return
            self._head_bytes = seen
            if self._head_since is None:  # the first bytes of a head (inlined: once per request)
                self._head_since = self.loop.time()
                if self._head_timer is None:
                    self._head_timer = self.loop.call_at(self._head_since + self._head_timeout,
                                                         self._check_head_clock)
        self._feed(data)

    def _receive_past_head_budget(self, data: bytes | memoryview) -> None:
        room = self._max_head_bytes - self._head_bytes
        self._head_bytes = self._max_head_bytes
        view = memoryview(data)
        self._feed(view[:room])
        if self.transport.is_closing():
            return
        if self._head_open and self._head_bytes == self._max_head_bytes:  # the same head is still incomplete
            self._refuse(RequestHeadTooLarge("max_header_bytes", self._max_head_bytes))
        else:  # the head ended within its budget: the rest is body or the next request
            self.data_received(view[room:])

    def _feed(self, data: bytes | memoryview) -> None:
        # uvicorn's data_received, with its text/plain 400 replaced by the error shape.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            refusal, self._refusal = self._refusal, None
            if refusal is None:
                log.info("invalid_http_request", client=self.client)
            self._refuse(refusal or BadRequest("invalid HTTP request"))

    def send_400_response(self, msg: str) -> None:
        self._refuse(BadRequest("invalid HTTP request"))

    def _start_head_clock(self) -> None:
        now = self.loop.time()
        self._head_since = now
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(now + self._head_timeout, self._check_head_clock)

    def _stop_head_clock(self) -> None:
        self._head_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _check_head_clock(self) -> None:
        # Armed once per head that is still pending when it fires, not once per request:
        # a head that completed meanwhile just clears it, a newer head re-arms it.
        self._head_timer = None
        since = self._head_since
        if since is None or self.transport.is_closing():
            return
        deadline = since + self._head_timeout
        if self.loop.time() >= deadline - 0.001:  # timers may fire up to the clock resolution early
            self._refuse(RequestHeadTimeout(self._head_timeout))
        else:
            self._head_timer = self.loop.call_at(deadline, self._check_head_clock)

    # Parser callbacks

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_since = None
        if len(self.headers) > self._max_header_count:
            self._refusal = RequestHeadTooLarge("max_header_count", self._max_header_count)
            raise self._refusal  # stops the parser; _feed answers
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_open = True
        self._head_bytes = 0
        super().on_message_complete()

    # Early answers

    def _refuse(self, error: FlotillaError) -> None:
        """Answer ``error`` and close, without the app; the connection stops counting at once."""
        transport = self.transport
        if transport.is_closing():
            return
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        self._stop_head_clock()
        cycle = self.cycle
        in_flight = cycle is not None and not cycle.response_complete
        if cycle is not None and in_flight:
            cycle.disconnected = True  # the app's task sees a disconnect; its answer is dropped
            cycle.message_event.set()
        if self.flow is not None:
            self.flow.resume_writing()
        hook = type(self).on_refusal  # through the class: a function stays unbound
        if hook is not None:
            hook(error.error_code)
        log.info("request_refused", status=error.status_code, error_code=error.error_code, client=self.client)
        if in_flight:
            transport.close()  # a pipelined request's answer cannot overtake the one in progress
        else:
            answer_and_linger(transport, self.loop, error)


def protocol_with(limits: HttpLimits, *,
                  on_refusal: Callable[[str], None] | None = None) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``, bound to ``limits``."""
    bound_limits, bound_on_refusal = limits, on_refusal

    class Bound(LimitedHttpToolsProtocol):
        limits = bound_limits
        on_refusal = bound_on_refusal

    return Bound
