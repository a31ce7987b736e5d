"""Settings of the tasks service (env prefix ``TASKS_``)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, SecretStr

from services.kit import catalog
from services.kit.events import TASK_EVENTS_STREAM, checked_stream_name
from services.kit.settings import ServiceSettings


class TasksSettings(ServiceSettings):
    service_name: ClassVar[str] = "tasks"

    # --- outbox relay -----------------------------------------------------------------
    #: Where events go without Redis (embedded mode): the data service's internal ingest.
    data_url: str = f"http://127.0.0.1:{catalog.DATA.local_port}"
    #: Shared with DATA_INTERNAL_TOKEN; only used without Redis (embedded mode), where the
    #: relay posts events to data's internal ingest. No default: `flotilla up` makes one.
    internal_token: SecretStr = SecretStr("")
    #: The Redis Stream events are published to (must keep the shared ACL prefix).
    events_stream: Annotated[str, AfterValidator(checked_stream_name)] = TASK_EVENTS_STREAM
    #: Approximate cap of the stream (XADD MAXLEN ~): Redis trims the oldest entries,
    #: read or not, so size it above the events written during the longest consumer
    #: outage to ride out (the default is days of the seed's workload).
    events_stream_maxlen: int = Field(default=100_000, ge=1000)
    relay_batch_size: int = Field(default=100, ge=1, le=1000)
    #: How often an idle relay looks for new outbox rows.
    relay_poll_seconds: float = Field(default=0.2, gt=0)
    #: Upper bound of the jittered exponential back-off while Redis/data is down.
    relay_backoff_max_seconds: float = Field(default=5.0, gt=0)
    #: The "events" health check reports down when the oldest unpublished row is older.
    relay_max_backlog_age_seconds: float = Field(default=60.0, gt=0)
    #: Published outbox rows are kept this long (for inspection and replay), then deleted
    #: once the consumer has confirmed them: without it the table grows by a row with
    #: every write, forever. Unconfirmed rows are never deleted.
    outbox_retention_seconds: float = Field(default=86_400.0, ge=0)
    #: A published row the consumer has not confirmed this long after its publication
    #: is published again (its entry may have died with Redis's data). A replay of an
    #: event that was only slow is skipped by the consumer as a duplicate.
    events_replay_after_seconds: float = Field(default=30.0, gt=0)
    #: How often the relay reads the consumer's confirmed sequence (and the stream's
    #: epoch, to notice a Redis that lost its data): one Redis round trip each time.
    events_confirm_interval_seconds: float = Field(default=1.0, gt=0)
    #: How often the relay deletes published rows older than the retention.
    outbox_prune_interval_seconds: float = Field(default=60.0, gt=0)
