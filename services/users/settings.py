"""Settings of the users service (env prefix ``USERS_``)."""

from __future__ import annotations

from typing import ClassVar

from services.kit.settings import ServiceSettings


class UsersSettings(ServiceSettings):
    service_name: ClassVar[str] = "users"
