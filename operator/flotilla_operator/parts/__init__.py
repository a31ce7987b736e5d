"""The parts of a ServiceSpec, one module each, found here rather than listed anywhere.

Every module of this package but ``base`` exposes ``PART`` (see ``base.Part``); they are
ordered by ``Part.order``. A new capability is a new module here, plus its CRD schema,
spec model, tests and docs.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Final

from flotilla_operator.parts.base import Part


def _discover() -> tuple[Part, ...]:
    found: list[Part] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            found.append(importlib.import_module(f"{__name__}.{info.name}").PART)
    return tuple(sorted(found, key=lambda part: part.order))


PARTS: Final[tuple[Part, ...]] = _discover()
CONDITIONS: Final[tuple[str, ...]] = tuple(part.condition for part in PARTS)

__all__ = ["CONDITIONS", "PARTS", "Part"]
