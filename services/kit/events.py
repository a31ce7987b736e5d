"""The task-event contract between the tasks service (producer) and data (consumer).

One source of truth for:

- ``TaskEvent``: what ``services/tasks/crud.py`` writes into ``OutboxEvent.payload``
  and what data applies (a test checks the two agree);
- the Redis Stream (``TASK_EVENTS_STREAM``) and its consumer group (``DATA_GROUP``),
  with the entry fields ``event_id``, ``type`` and ``payload`` (the event as JSON);
- the internal HTTP ingest used instead of the stream when there is no Redis
  (embedded mode): ``POST INGEST_PATH`` with ``{"events": [...]}`` and the shared
  token in ``INTERNAL_TOKEN_HEADER``.

Redis ACLs: every event stream lives under ``EVENT_STREAM_PREFIX``
(``flotilla:events:``), outside any one service's own key prefix. The operator grants
that prefix to the producer's and the consumer's ACL users (``~flotilla:events:*``)
in addition to their own prefix, so a stream name must always start with it.

Delivery is at least once (the relay may publish an event again after a failure
between publish and marking the outbox row), so consumers are idempotent by
``event_id``.

End to end, no event is forgotten by its producer before its consumer has committed
it, even when Redis loses its data:

- the relay numbers events as it first publishes them (``seq``: 1, 2, 3 ... per
  producer, no holes, never reused);
- the consumer records each event's ``seq`` with its id, in the transaction that
  applies it, and advances its *confirmed* sequence: the highest N with every event
  1..N committed. It writes N to ``confirmed_key(stream)`` (the HTTP ingest returns it);
- the relay keeps published rows until their ``seq`` is confirmed, and publishes an
  unconfirmed row again after a timeout, or at once when ``epoch_key(stream)``
  changed (Redis lost its data: the stream and the pending entries are gone).
  Pruning removes only confirmed rows.

The two keys live under the stream's own name, inside ``EVENT_STREAM_PREFIX``, so the
producer's and the consumer's ACLs already cover them: no new credential, and no
network path from tasks to data. A key lost with Redis's data is never read as a
confirmation: the relay keeps the highest value it has seen, and the consumer writes
its value again every second.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.kit.tracing import is_valid_traceparent

#: Every event stream's key starts with this; the operator's Redis ACLs grant it.
EVENT_STREAM_PREFIX = "flotilla:events:"
#: The stream of task events: tasks' relay XADDs, data's consumer group reads.
TASK_EVENTS_STREAM = f"{EVENT_STREAM_PREFIX}tasks"
#: The consumer group of the data service on TASK_EVENTS_STREAM.
DATA_GROUP = "data"
#: The producer whose sequence the task events carry (one counter for all its replicas).
TASK_EVENTS_PRODUCER = "tasks"


def confirmed_key(stream: str) -> str:
    """The consumer's confirmed sequence on ``stream`` (written by the consumer)."""
    return f"{stream}:confirmed"


def head_key(stream: str) -> str:
    """The highest sequence published on ``stream`` (written by the relay; for the lag)."""
    return f"{stream}:head"


def epoch_key(stream: str) -> str:
    """A random value set once per Redis dataset: when it changes, Redis lost its data."""
    return f"{stream}:epoch"

#: Internal ingest endpoint of the data service (embedded mode, no Redis). Never
#: routed by the gateway and left out of the OpenAPI document.
INGEST_PATH = "/internal/v1/events"
INTERNAL_TOKEN_HEADER = "X-Flotilla-Internal-Token"  # noqa: S105 - a header name, not a secret
#: TASKS_INTERNAL_TOKEN / DATA_INTERNAL_TOKEN have no built-in value: a token in the
#: code would be public, and anyone reaching data's port could forge task events with
#: it. `flotilla up` generates one per run; without one, data refuses the ingest.

#: What services.kit.middleware accepts as a request id.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

TaskEventType = Literal["task.created", "task.updated", "task.deleted"]
# Copies of the tasks service's enums (kit must not import a service); a test pins them.
TaskPriority = Literal["low", "medium", "high"]
TaskStatus = Literal["todo", "in_progress", "done"]


class TaskEvent(BaseModel):
    """One change of a task, with the task's state after the change.

    ``task.deleted`` carries the state the task had when it was deleted.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    type: TaskEventType
    task_id: uuid.UUID
    owner_id: str = Field(min_length=1, max_length=64)
    priority: TaskPriority
    status: TaskStatus
    title: str = Field(max_length=200)
    occurred_at: AwareDatetime
    #: The producer's sequence number (absent on events published before numbering).
    seq: int | None = Field(default=None, ge=1)
    #: The request that caused the change: its request id and W3C ``traceparent`` (the
    #: producer's span as the parent), so the consumer's logs carry the same ids as the
    #: gateway's and the producer's. Absent on events written outside a request (and on
    #: those written before this field); a malformed value is dropped, never the event.
    request_id: str | None = None
    traceparent: str | None = None

    @field_validator("request_id", mode="before")
    @classmethod
    def _request_id_or_none(cls, value: Any) -> str | None:
        return value if isinstance(value, str) and _REQUEST_ID.match(value) else None

    @field_validator("traceparent", mode="before")
    @classmethod
    def _traceparent_or_none(cls, value: Any) -> str | None:
        return value if isinstance(value, str) and is_valid_traceparent(value) else None

    @property
    def trace_id(self) -> str | None:
        return self.traceparent.split("-")[1] if self.traceparent else None


class TaskEventBatch(BaseModel):
    """Body of the internal ingest. Items are validated one by one by the receiver, so
    one malformed event is skipped instead of blocking every event behind it."""

    events: list[dict[str, Any]] = Field(max_length=1000)


def stream_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """Fields of the stream entry for an event payload (a TaskEvent as JSON)."""
    return {
        "event_id": str(payload["event_id"]),
        "type": str(payload["type"]),
        "payload": orjson.dumps(payload).decode(),  # orjson writes UUIDs and datetimes itself
    }


def from_stream_fields(fields: Mapping[str, str]) -> TaskEvent:
    """The event of a stream entry; ``KeyError`` or ``pydantic.ValidationError`` for an
    entry that is not one."""
    return TaskEvent.model_validate_json(fields["payload"])



def checked_stream_name(name: str) -> str:
    """Settings validator: a stream outside EVENT_STREAM_PREFIX would fail on ACLs."""
    if not name.startswith(EVENT_STREAM_PREFIX) or name == EVENT_STREAM_PREFIX:
        raise ValueError(f"an event stream name must start with {EVENT_STREAM_PREFIX!r}")
    return name
