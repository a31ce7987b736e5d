"""Reading a ``limits`` budget ("5/minute;20/hour"), as auth's login and registration
settings spell them: tests derive their counts from the shipped values, never repeat them."""

from __future__ import annotations

from limits import RateLimitItem, parse_many


def windows(spec: str) -> list[RateLimitItem]:
    """Every window of the budget."""
    return list(parse_many(spec))


def allowed_before_refusal(spec: str) -> int:
    """How many attempts pass before the tightest window refuses."""
    return min(window.amount for window in windows(spec))
