"""Input validators shared by the services' request models."""

from __future__ import annotations


def reject_nul(value: str) -> str:
    """Pydantic ``AfterValidator``: PostgreSQL text cannot hold NUL, so it is bad input
    (422) rather than a 500 at insert time."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value
