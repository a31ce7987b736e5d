"""The one error shape every service answers with, as a test assertion."""

from __future__ import annotations

from typing import Any

import httpx

ERROR_FIELDS = {"error_code", "message", "details", "request_id"}


def assert_error_shape(response: httpx.Response, status: int, error_code: str) -> dict[str, Any]:
    """Assert status, the exact field set, the code, and no leaked internals; return the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_FIELDS
    assert body["error_code"] == error_code
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body
