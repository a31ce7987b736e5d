"""Request and response models: TaskBase -> TaskCreate / TaskUpdate / TaskPublic."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from services.kit.validators import multi_line_text, single_line_text
from services.tasks.models import Priority, Status

Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(single_line_text)
]
Description = Annotated[str, StringConstraints(max_length=5000), AfterValidator(multi_line_text)]


class TaskBase(BaseModel):
    title: Title
    description: Description | None = None
    priority: Priority = Priority.medium


class TaskCreate(TaskBase):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"title": "Ship it", "priority": "high"}]}
    )


class TaskUpdate(BaseModel):
    """Only the fields sent change. ``description: null`` clears it; the other fields
    cannot be empty, so ``null`` for them is a 422 rather than a database error. A patch
    with no field at all is a 422 too: it would change nothing but ``updated_at``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "done"}]})

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    status: Status | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("nothing to update; send at least one of title, description, priority, status")
        nulled = [name for name in ("title", "priority", "status")
                  if name in self.model_fields_set and getattr(self, name) is None]
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null; leave the field out to keep its value")
        return self


TASK_EXAMPLE: dict[str, JsonValue] = {
    "id": "5f0c9d2e-1a4b-4c3d-8e7f-6a5b4c3d2e1f", "title": "Ship it", "description": None,
    "priority": "high", "status": "todo",
    "created_at": "2026-01-15T09:30:00Z", "updated_at": "2026-01-15T09:30:00Z",
}


class TaskPublic(TaskBase):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [TASK_EXAMPLE]})

    id: uuid.UUID
    status: Status
    created_at: datetime
    updated_at: datetime


class TasksPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"data": [TASK_EXAMPLE], "count": 1, "next_cursor": None}]})

    data: list[TaskPublic]
    #: Items in this page.
    count: int
    #: Pass as ``cursor`` to get the next page; null on the last page.
    next_cursor: str | None = Field(default=None)
