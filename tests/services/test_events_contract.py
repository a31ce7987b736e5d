"""The task-event contract: what tasks writes is what kit.events describes."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from services.data.settings import DataSettings
from services.kit import catalog
from services.kit.events import (
    EVENT_STREAM_PREFIX,
    TASK_EVENTS_STREAM,
    TaskEvent,
    TaskPriority,
    TaskStatus,
    from_stream_fields,
    stream_fields,
)
from services.launcher import Stack
from services.tasks.models import OutboxEvent, Priority, Status
from services.tasks.settings import TasksSettings
from tests.services.conftest import running
from tests.support.events import event, outbox_state, tasks_app
from tests.support.servers import free_port
from tests.support.tokens import auth_header


def test_kit_literals_match_the_tasks_enums() -> None:
    assert get_args(TaskPriority) == tuple(p.value for p in Priority)
    assert get_args(TaskStatus) == tuple(s.value for s in Status)


def test_stream_name_keeps_the_shared_acl_prefix() -> None:
    assert TASK_EVENTS_STREAM.startswith(EVENT_STREAM_PREFIX)
    assert TasksSettings(events_stream=f"{EVENT_STREAM_PREFIX}other").events_stream.endswith("other")
    for bad in ("tasks:events", EVENT_STREAM_PREFIX):
        with pytest.raises(ValidationError):
            TasksSettings(events_stream=bad)
        with pytest.raises(ValidationError):
            DataSettings(events_stream=bad)


def test_stream_fields_round_trip() -> None:
    payload = event("alice", type="task.updated", status="done")
    fields = stream_fields(payload)
    assert fields["event_id"] == payload["event_id"]
    assert fields["type"] == "task.updated"
    assert from_stream_fields(fields) == TaskEvent.model_validate(payload)


def test_trace_fields_are_optional_and_never_cost_an_event() -> None:
    """request_id/traceparent (added for issue 17): absent on older events; a malformed
    value is dropped, the event kept (a bad id must never lose a task's change)."""
    plain = TaskEvent.model_validate(event("alice"))
    assert plain.request_id is None
    assert plain.traceparent is None
    assert plain.trace_id is None
    traced = TaskEvent.model_validate({**event("alice"), "request_id": "req-1",
                                       "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert traced.request_id == "req-1"
    assert traced.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert from_stream_fields(stream_fields(traced.model_dump(mode="json"))) == traced
    bad = TaskEvent.model_validate({**event("alice"), "request_id": "x\ny" * 50, "traceparent": "00-zz-01"})
    assert bad.request_id is None
    assert bad.traceparent is None


def test_there_is_no_built_in_ingest_token() -> None:
    """A token in the code would be public: without a configured one, the ingest is off."""
    assert DataSettings().internal_token.get_secret_value() == ""
    assert TasksSettings().internal_token.get_secret_value() == ""
    assert not DataSettings().ingest_enabled
    assert DataSettings(internal_token="a-real-secret").ingest_enabled


def test_every_flotilla_up_run_shares_a_new_token_between_tasks_and_data() -> None:
    first, second = Stack(), Stack()
    assert first.internal_token != second.internal_token
    assert len(first.internal_token) >= 32
    for service in (catalog.TASKS, catalog.DATA):
        assert first.env_for(service)[f"{catalog.env_prefix(service.name)}INTERNAL_TOKEN"] == first.internal_token


async def test_outbox_payloads_are_task_events_and_wait_while_data_is_away(tmp_path: Path) -> None:
    """Every write's outbox payload validates against the contract; with the data
    service unreachable the rows stay unpublished and the writes still succeed."""
    app = tasks_app(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}", data_dir=tmp_path,
                    data_url=f"http://127.0.0.1:{free_port()}")
    alice = auth_header("alice")
    async with running(app) as client:
        traced = {**alice, "x-request-id": "req-contract-1",
                  "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        created = await client.post("/api/v1/tasks", json={"title": "Plan", "priority": "high"}, headers=traced)
        assert created.status_code == 201
        task_id = created.json()["id"]
        patched = await client.patch(f"/api/v1/tasks/{task_id}", json={"status": "done"}, headers=alice)
        assert patched.status_code == 200
        assert (await client.delete(f"/api/v1/tasks/{task_id}", headers=alice)).status_code == 204

        async with app.state.kit.database.session() as session:
            rows = list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)))
        events = [TaskEvent.model_validate(row.payload) for row in rows]
        assert [e.type for e in events] == ["task.created", "task.updated", "task.deleted"]
        assert {str(e.task_id) for e in events} == {task_id}
        assert [e.status for e in events] == ["todo", "done", "done"]
        assert all(str(e.event_id) == str(row.id) for e, row in zip(events, rows, strict=True))
        # the request that caused each change travels with its event (tasks' span as the parent)
        assert events[0].request_id == "req-contract-1"
        assert events[0].trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert events[0].traceparent is not None
        assert "00f067aa0ba902b7" not in events[0].traceparent
        assert events[1].request_id
        assert events[1].request_id != "req-contract-1"
        assert await outbox_state(app) == {"published": 0, "unpublished": 3}
        health = (await client.get("/health")).json()
        assert health["checks"]["events"]["status"] == "up"  # young backlog: not yet a problem
