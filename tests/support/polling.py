"""Bounded polling for tests that wait on another task or process: never a bare sleep.

One implementation, two doors::

    value = await eventually(check, within=60, message="task published")   # async tests
    value = eventually_sync(check, within=60, message="stack calm")        # sync tests, fixtures

``check`` is a plain function or a coroutine function; its first truthy result is
returned. The deadline only bounds a failing test: a passing one returns as soon as the
condition holds, so deadlines are generous (a slow, shared, single-core machine must
not turn a wait into a failure) and there is no timing threshold hidden in here.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Default patience. Generous on purpose: see the module docstring.
DEADLINE_SECONDS = 60.0
#: Default pause between two checks.
INTERVAL_SECONDS = 0.05


async def eventually(check: Callable[[], T | Awaitable[T]], *, within: float = DEADLINE_SECONDS,
                     interval: float = INTERVAL_SECONDS, message: str = "condition") -> T:
    """Call ``check`` (sync or async) until it returns something truthy, and return that.

    The check always runs once more after the deadline has passed, so a machine that
    stalled for the whole wait still gets its answer instead of a spurious failure.
    """
    deadline = time.monotonic() + within
    while True:
        expired = time.monotonic() >= deadline
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]  # an awaited T
        if expired:
            raise AssertionError(f"timed out after {within}s waiting for {message}; last value: {value!r}")
        await asyncio.sleep(interval)


def eventually_sync(check: Callable[[], T], *, within: float = DEADLINE_SECONDS,
                    interval: float = INTERVAL_SECONDS, message: str = "condition") -> T:
    """:func:`eventually` for synchronous tests and fixtures (no event loop of their own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(eventually(check, within=within, interval=interval, message=message))
    raise RuntimeError("eventually_sync() inside a running event loop would block it: await eventually()")
