"""W3C traceparent at the edge: accepted when well formed, replaced otherwise, passed on
with the gateway's own span as the parent (issue 17, item 4)."""

from __future__ import annotations

import pytest

from services.gateway.headers import upstream_request_headers
from services.kit.tracing import new_trace, parse_traceparent

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value", [
    b"", b"garbage", VALID.upper(), VALID[:-1], VALID + b"-extra",  # version 00 has exactly four fields
    b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
])
def test_malformed_traceparent_starts_a_new_trace(value: bytes) -> None:
    assert parse_traceparent(value) is None
    trace = new_trace("req", value)
    assert trace.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert parse_traceparent(trace.traceparent.encode()) == (trace.trace_id, "00")


def test_valid_traceparent_is_continued_with_a_new_parent() -> None:
    assert parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future") is not None
    trace = new_trace("req", VALID)
    assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert trace.traceparent.endswith("-01")  # the caller's sampling decision kept
    assert "00f067aa0ba902b7" not in trace.traceparent  # this hop is the parent now
    assert new_trace("req", None).trace_id != new_trace("req", None).trace_id


def test_gateway_sends_its_own_traceparent_upstream_never_the_callers_twice() -> None:
    out = upstream_request_headers([(b"traceparent", b"00-garbage"), (b"tracestate", b"a=b")], request_id="r",
                                   client_ip="127.0.0.1", scheme="http", forwarding_token="t",
                                   traceparent=new_trace("r", VALID).traceparent)
    parents = [v for k, v in out if k == "traceparent"]
    assert len(parents) == 1
    assert parents[0].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert ("tracestate", "a=b") in out  # vendor state is end to end
