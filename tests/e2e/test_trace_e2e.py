"""One id across the whole path: a task creation's request id and W3C trace id, followed by
grepping the stack's log files from the gateway's access log, through tasks', into the
line where data commits the task's event (issue 17, item 4)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from services.kit import catalog
from services.launcher import Stack
from tests.e2e.conftest import bearer, gateway, register_and_login
from tests.support.polling import eventually_sync

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _lines_with(stack: Stack, service: catalog.ServiceInfo, needle: str) -> list[dict[str, Any]]:
    text = stack.log_path(service).read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if needle in line and line.startswith("{")]


def _follow(stack: Stack, *, traceparent: str | None) -> tuple[str, str]:
    request_id = f"follow-{uuid.uuid4().hex}"
    headers = {"x-request-id": request_id}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    with gateway(stack) as client:
        auth = bearer(register_and_login(client, f"trace-{uuid.uuid4().hex[:10]}@example.com"))
        created = client.post("/api/v1/tasks", json={"title": "follow me"}, headers={**auth, **headers})
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"] == request_id
        task_id = created.json()["id"]

    committed = eventually_sync(lambda: _lines_with(stack, catalog.DATA, request_id), within=30, interval=0.3)
    (gateway_line,) = [line for line in _lines_with(stack, catalog.GATEWAY, request_id) if line["event"] == "request"]
    (tasks_line,) = [line for line in _lines_with(stack, catalog.TASKS, request_id) if line["event"] == "request"]
    (data_line,) = committed
    assert gateway_line["method"] == tasks_line["method"] == "POST"
    assert gateway_line["status"] == tasks_line["status"] == 201
    assert data_line["event"] == "task_event_committed"
    assert data_line["type"] == "task.created"
    assert data_line["task_id"] == task_id
    # one trace id on every hop: the caller's, or the one the gateway started
    trace_id = gateway_line["trace_id"]
    assert tasks_line["trace_id"] == data_line["trace_id"] == trace_id
    assert len(trace_id) == 32
    return request_id, trace_id


def test_a_request_id_and_trace_follow_a_task_into_data_embedded(embedded_stack: Stack) -> None:
    """Embedded mode: tasks' relay posts the event to data's internal ingest."""
    _, trace_id = _follow(embedded_stack, traceparent=CALLER)
    assert trace_id == TRACE_ID  # the caller's valid traceparent is continued
    _, new_trace = _follow(embedded_stack, traceparent=None)
    assert new_trace != TRACE_ID  # none sent: the gateway starts one
    _, replaced = _follow(embedded_stack, traceparent="00-not-a-trace-01")
    assert replaced != TRACE_ID
    assert len(replaced) == 32


@pytest.mark.postgres
@pytest.mark.redis
def test_a_request_id_and_trace_follow_a_task_into_data_through_redis(real_stack: Stack) -> None:
    """Real servers: the event goes through the Redis Stream to data's consumer group."""
    _, trace_id = _follow(real_stack, traceparent=CALLER)
    assert trace_id == TRACE_ID
