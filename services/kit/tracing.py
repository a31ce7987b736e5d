"""W3C Trace Context (``traceparent``) and the request id, for one id across the whole path.

The gateway accepts a caller's ``traceparent`` when it is well formed (else starts a new
trace) and passes it on with its own span as the parent; every service does the same
(services.kit.middleware), logs the trace id beside the request id, and the tasks
service writes both into its outbox events, so data logs them when it applies an event:
one grep of a request id (or trace id) follows a task creation from the gateway's access
log into data's.

Nothing is exported (no OpenTelemetry SDK here): the ids are for correlating logs.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import NamedTuple

TRACEPARENT_HEADER = b"traceparent"
#: version 00: ``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``, lowercase. A
#: later version may append fields after the flags ("-..."): its first four are read.
_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_PARENT_ID = "0" * 16


class Trace(NamedTuple):
    request_id: str
    trace_id: str
    #: This hop's own span id: the parent id of whatever it calls or emits.
    span_id: str
    flags: str

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` to send on (this hop as the parent)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: bytes) -> tuple[str, str] | None:
    """(trace id, flags) of a valid ``traceparent``, else None (the caller starts a new trace)."""
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace, parent = trace_id.decode("ascii"), parent_id.decode("ascii")
    if trace == _INVALID_TRACE_ID or parent == _INVALID_PARENT_ID:
        return None
    return trace, flags.decode("ascii")


def new_trace(request_id: str, traceparent: bytes | None) -> Trace:
    """This hop's trace: the caller's trace id when its header is valid, else a new one."""
    # One getrandom call for both ids (~1.5 us per request with the parsing).
    random = os.urandom(24).hex()
    parsed = parse_traceparent(traceparent) if traceparent is not None else None
    trace_id, flags = parsed if parsed is not None else (random[16:], "00")
    return Trace(request_id, trace_id, random[:16], flags)


#: The current request's trace, set by the request middleware (None outside a request).
current: ContextVar[Trace | None] = ContextVar("flotilla_trace", default=None)


def is_valid_traceparent(value: str) -> bool:
    try:
        return parse_traceparent(value.encode("ascii")) is not None
    except UnicodeEncodeError:
        return False
