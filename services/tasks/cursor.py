"""Opaque keyset cursors: the (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson

from services.kit.errors import FlotillaError


class InvalidCursor(FlotillaError):
    status_code = 422
    error_code = "validation_error"

    def __init__(self) -> None:
        super().__init__(
            "invalid pagination cursor",
            details={"errors": [{"loc": ["query", "cursor"], "msg": "not a cursor returned by this API",
                                 "type": "invalid_cursor"}]},
        )


def encode_cursor(created_at: datetime, task_id: uuid.UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), task_id.hex])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor holds; InvalidCursor (422) for anything else, whatever
    a client put in it (wrong types, offsets that leave the datetime range)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_hex = orjson.loads(raw)
        if not isinstance(created, str) or not isinstance(task_hex, str):
            raise TypeError("cursor fields must be strings")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return created_at.astimezone(UTC), uuid.UUID(hex=task_hex)
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise InvalidCursor() from None
