"""Request and response models of the users service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from services.kit.validators import multi_line_text, single_line_text

DISPLAY_NAME_MAX = 100
BIO_MAX = 2000

#: Shown inline in other people's UIs: one line, no control or bidi override characters.
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=DISPLAY_NAME_MAX),
    AfterValidator(single_line_text),
]
Bio = Annotated[str, StringConstraints(max_length=BIO_MAX), AfterValidator(multi_line_text)]


class ProfileUpdate(BaseModel):
    """Fields to change; an explicit ``null`` clears a field, an absent one is left alone."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"display_name": "Alice", "bio": "Ships things."}]}
    )

    display_name: DisplayName | None = None
    bio: Bio | None = None


class ProfilePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "0b6e3a52-8c1f-4d7e-9a3b-2f5c6d7e8f90", "email": "alice@example.com", "display_name": "Alice",
        "bio": "Ships things.",
        "created_at": "2026-01-15T09:30:00Z", "updated_at": "2026-01-16T12:00:00Z",
    }]})

    id: str
    email: str | None
    display_name: str | None
    bio: str | None
    created_at: datetime
    updated_at: datetime
