"""Settings of the tasks service (env prefix ``TASKS_``)."""

from __future__ import annotations

from typing import ClassVar

from services.kit.settings import ServiceSettings


class TasksSettings(ServiceSettings):
    service_name: ClassVar[str] = "tasks"
