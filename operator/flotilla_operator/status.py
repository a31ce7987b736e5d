"""Status in Kubernetes conventions: conditions with observedGeneration, and a phase.

Each part handler records its own condition; ``Ready`` and ``phase`` are derived from
the part conditions (whichever parts there are: the caller names them, condition type
and label, in their order) every time one changes. lastTransitionTime moves only when a
condition's status does, so it tells how long something has been broken.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

ConditionStatus = Literal["True", "False", "Unknown"]
#: Condition type -> label of every part, in order.
PartConditions = Mapping[str, str]
READY: Final = "Ready"
#: Reasons that only a spec change (or a human) can clear: the phase becomes Failed.
PERMANENT_REASONS: Final = frozenset({"InvalidSpec", "OwnershipConflict", "Forbidden"})


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_since(timestamp: str) -> float:
    """Seconds elapsed since a timestamp written by ``now()`` (negative if in the future)."""
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(tz=datetime.UTC) - then).total_seconds()


def set_condition(
    conditions: Sequence[Mapping[str, Any]], *, type_: str, status: ConditionStatus, reason: str,
    message: str, generation: int | None, order: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Set one condition; ``order``: the part condition types, listed first in that order."""
    result = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    condition: dict[str, Any] = {
        "type": type_, "status": status, "reason": reason, "message": message[:32000],
        "lastTransitionTime": transition or now(),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    result.append(condition)
    ranks = [*order, READY]
    return sorted(result, key=lambda c: ranks.index(c["type"]) if c["type"] in ranks else len(ranks))


def summarize(conditions: Sequence[Mapping[str, Any]], generation: int | None,
              part_conditions: PartConditions) -> tuple[list[dict[str, Any]], str]:
    """Add/refresh the Ready condition; return the conditions and the phase."""
    parts = {c["type"]: c for c in conditions if c.get("type") in part_conditions}
    missing = [t for t in part_conditions if t not in parts]
    broken = [c for c in parts.values() if c.get("status") == "False"]
    unknown = [c for c in parts.values() if c.get("status") == "Unknown"]
    if any(c.get("reason") in PERMANENT_REASONS for c in broken):
        phase = "Failed"
    elif broken:
        phase = "Degraded"
    elif missing or unknown:
        phase = "Provisioning" if parts else "Pending"
    else:
        phase = "Ready"
    if phase == "Ready":
        labels = list(part_conditions.values())
        listed = ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else "".join(labels)
        ready: tuple[ConditionStatus, str, str] = ("True", "AllPartsReady", f"{listed} are ready")
    else:
        first = (broken or unknown)[:1]
        reason = str(first[0].get("reason") or "Provisioning") if first else "Provisioning"
        waiting = [c["type"] for c in broken + unknown] + missing
        ready = ("False" if broken else "Unknown", reason, f"not ready: {', '.join(waiting)}")
    observed = [c.get("observedGeneration") for c in parts.values()]
    ready_generation = generation if not missing and all(g == generation for g in observed) else None
    updated = set_condition(conditions, type_=READY, status=ready[0], reason=ready[1], message=ready[2],
                            generation=ready_generation, order=list(part_conditions))
    return updated, phase


def observed_generation(conditions: Sequence[Mapping[str, Any]], part_conditions: PartConditions) -> int | None:
    """The generation every part condition has caught up with (None until all have)."""
    parts = [c for c in conditions if c.get("type") in part_conditions]
    generations = [c.get("observedGeneration") for c in parts]
    if len(parts) < len(part_conditions) or any(g is None for g in generations):
        return None
    return min(int(g) for g in generations if g is not None)
