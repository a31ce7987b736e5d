"""Settings of the data service (env prefix ``DATA_``)."""

from __future__ import annotations

import os
import socket
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator

from services.kit.events import TASK_EVENTS_STREAM, checked_stream_name
from services.kit.settings import ServiceSettings


class DataSettings(ServiceSettings):
    service_name: ClassVar[str] = "data"

    # --- task events --------------------------------------------------------------------
    #: Shared with TASKS_INTERNAL_TOKEN; guards the internal ingest (embedded mode).
    #: The default is for development only: in production the ingest stays closed
    #: until a real token is set.
    internal_token: SecretStr = SecretStr("")
    #: The Redis Stream to consume (must keep the shared ACL prefix).
    events_stream: Annotated[str, AfterValidator(checked_stream_name)] = TASK_EVENTS_STREAM
    #: Consumer name in the group; empty means ``<hostname>-<pid>`` (unique per pod).
    consumer_name: str = ""
    consumer_batch_size: int = Field(default=100, ge=1, le=1000)
    #: XREADGROUP BLOCK: how long one read waits for new entries.
    consumer_block_ms: int = Field(default=2000, ge=10)
    #: Pending entries idle this long belong to a consumer that died: claim them.
    consumer_claim_idle_ms: int = Field(default=60_000, ge=1)
    #: How often to look for such entries (also done once on start).
    consumer_claim_interval_seconds: float = Field(default=30.0, gt=0)
    consumer_backoff_max_seconds: float = Field(default=5.0, gt=0)
    #: How often the consumer writes its confirmed sequence for the relay (which keeps
    #: unconfirmed events and replays them) and reads the producer's head (for the lag).
    consumer_report_interval_seconds: float = Field(default=1.0, gt=0)
    #: The "events" health check (and so /health) reports degraded beyond this many
    #: events published but not yet confirmed (committed here without a gap).
    events_max_lag: int = Field(default=1000, ge=0)
    #: Event ids are remembered this long for de-duplication; redeliveries come within
    #: minutes, so a week is generous while keeping the table bounded.
    processed_events_retention_days: int = Field(default=7, ge=1)

    # --- recommendations ------------------------------------------------------------------
    #: Time budget of each step (personalised, popular) before falling back.
    recommendations_timeout_seconds: float = Field(default=0.2, gt=0)
    recommendations_limit: int = Field(default=10, ge=1, le=100)
    #: Privacy threshold (k-anonymity) of popular titles: a title is shown to other users
    #: only when at least this many distinct users have a live task with it (titles
    #: compared case- and whitespace-insensitively), so a popular item never reveals
    #: one user's private task, and planting one takes this many accounts. The count
    #: itself is never shown.
    popular_min_users: int = Field(default=25, ge=1)
    #: Only users whose first task the data service saw at least this long ago count
    #: towards ``popular_min_users`` (default 7 days), so fresh accounts made to plant a
    #: title (or to confirm a guessed one) count for nothing. 0 counts every user.
    popular_min_user_age_seconds: float = Field(default=7 * 24 * 3600, ge=0)
    popular_cache_ttl_seconds: int = Field(default=60, ge=1)
    #: How often popular titles are recomputed (by one replica); below the cache TTL, so
    #: the cached list never runs out while the refresher is alive.
    popular_refresh_seconds: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _refresh_before_expiry(self) -> Self:
        if self.popular_refresh_seconds >= self.popular_cache_ttl_seconds:
            raise ValueError("DATA_POPULAR_REFRESH_SECONDS must be below DATA_POPULAR_CACHE_TTL_SECONDS")
        return self

    @property
    def ingest_enabled(self) -> bool:
        return bool(self.internal_token.get_secret_value())

    @property
    def effective_consumer_name(self) -> str:
        return self.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
