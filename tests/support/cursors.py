"""Pagination cursors as a client could forge them: the tasks API's encoding with any fields."""

from __future__ import annotations

import base64

import orjson


def forged_cursor(*fields: object) -> str:
    """base64url (unpadded) of the JSON list ``fields``, the shape of a real cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(list(fields))).decode().rstrip("=")
