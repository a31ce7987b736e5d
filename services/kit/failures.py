"""What failed, in one line an operator can act on (the CLI's and an init container's errors).

Its own module, without SQLAlchemy: ``flotilla serve`` imports it for every service, and a
service without a database (the gateway) never loads SQLAlchemy.
"""

from __future__ import annotations

from pydantic import ValidationError


def describe_failure(exc: BaseException) -> str:
    """One line for an operator: what failed reaching or using the database, or which
    setting is wrong, without the stack of wrappers around it."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "settings"
        return f"invalid setting {where.upper()}: {first.get('msg', '')}"
    root: BaseException = exc
    while True:  # SQLAlchemy wraps the driver's error in .orig, others chain with __cause__
        inner = getattr(root, "orig", None) or root.__cause__
        if inner is None or inner is root:
            break
        root = inner
    if isinstance(root, ConnectionRefusedError | TimeoutError | OSError) and not isinstance(root, PermissionError):
        hint = "is PostgreSQL running there, and is the URL's host and port right?"
        return f"cannot connect to the database ({root.strerror or type(root).__name__}); {hint}"
    message = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    return f"{type(root).__name__}: {message}"
