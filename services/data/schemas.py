"""Response models of the data service."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.kit.events import TaskPriority, TaskStatus


class StatsPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "0b6e3a52-8c1f-4d7e-9a3b-2f5c6d7e8f90", "created": 5, "open": 3, "done": 1, "deleted": 1,
        "by_priority": {"low": 1, "medium": 2, "high": 1}, "by_status": {"todo": 2, "in_progress": 1, "done": 1},
    }]})

    user_id: str
    #: Tasks ever created (deleted ones included).
    created: int
    #: Live tasks not done (todo + in_progress).
    open: int
    #: Live tasks done.
    done: int
    deleted: int
    #: Live tasks per priority / per status.
    by_priority: dict[TaskPriority, int]
    by_status: dict[TaskStatus, int]


class Recommendation(BaseModel):
    """One of the caller's open tasks, or a popular title: one that at least
    ``DATA_POPULAR_MIN_USERS`` users have (how many is not told)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"title": "Ship it", "task_id": "5f0c9d2e-1a4b-4c3d-8e7f-6a5b4c3d2e1f", "priority": "high"}]})

    title: str
    #: One of the caller's own open tasks (personalised); null for popular titles.
    task_id: uuid.UUID | None = None
    priority: TaskPriority | None = None


class RecommendationsPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "0b6e3a52-8c1f-4d7e-9a3b-2f5c6d7e8f90", "source": "personalised", "fallback": False,
        "recommendations": [
            {"title": "Ship it", "task_id": "5f0c9d2e-1a4b-4c3d-8e7f-6a5b4c3d2e1f", "priority": "high"}],
    }]})

    user_id: str
    #: Which step answered: personalised, popular, or none of them.
    source: Literal["personalised", "popular", "none"]
    #: True unless the answer is personalised.
    fallback: bool
    recommendations: list[Recommendation] = Field(default_factory=list)


class IngestResult(BaseModel):
    applied: int
    duplicates: int
    invalid: int
    #: The producer's confirmed sequence after this batch: the relay may forget every
    #: event up to it (None when the batch had no numbered events).
    confirmed_seq: int | None = None
