"""Request and response models of the users service."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from services.kit.validators import reject_nul

DISPLAY_NAME_MAX = 100
BIO_MAX = 2000


def _single_line(value: str) -> str:
    # A name is shown inline in other people's UIs: no newlines, no control characters
    # (which covers NUL, rejected everywhere because PostgreSQL text cannot hold it).
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=DISPLAY_NAME_MAX),
    AfterValidator(_single_line),
]
Bio = Annotated[str, StringConstraints(max_length=BIO_MAX), AfterValidator(reject_nul)]


class ProfileUpdate(BaseModel):
    """Fields to change; an explicit ``null`` clears a field, an absent one is left alone."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"display_name": "Alice", "bio": "Ships things."}]}
    )

    display_name: DisplayName | None = None
    bio: Bio | None = None


class ProfilePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str | None
    display_name: str | None
    bio: str | None
    created_at: datetime
    updated_at: datetime
