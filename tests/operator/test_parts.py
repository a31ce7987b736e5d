"""Issue 15.7: the operator's parts as a protocol.

Each part (a module of flotilla_operator.parts) declares its condition type, its delete
behaviour and whether a rotation concerns it; the handlers and the status know parts
only through that. Proved two ways: the registration and the status follow a part
added at run time, and neither handlers.py nor status.py names any part.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import kopf
import pytest
from flotilla_operator import crd, handlers, status
from flotilla_operator.parts import PARTS
from flotilla_operator.parts.base import Context, Outcome
from flotilla_operator.settings import OperatorSettings
from flotilla_operator.spec import ServiceSpec

PACKAGE = Path(handlers.__file__).parent


class QueuesPart:
    """What a new capability would add: one object with the protocol's attributes."""

    name = "queues"
    label = "queues"
    condition = "QueuesReady"
    order = 40
    releases_on_delete = True
    rotates = True

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome:
        return Outcome("Provisioned", "queues")

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]:
        return []


def test_the_parts_are_found_in_their_package_in_order() -> None:
    assert [p.name for p in PARTS] == ["database", "redis", "dashboards"]
    assert len({p.condition for p in PARTS}) == len(PARTS)
    # Every capability the CRD's spec offers is a part, and every part is in the CRD.
    assert set(crd.openapi_schema()["properties"]["spec"]["properties"]) == {p.name for p in PARTS}


def test_handlers_and_status_name_no_part() -> None:
    names = {w for p in PARTS for w in (p.name, p.label, p.condition)}
    for module in ("handlers.py", "status.py"):
        tree = ast.parse((PACKAGE / module).read_text())
        literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                    and isinstance(node.value, str)}
        assert not literals & names, f"{module} special-cases parts: {sorted(literals & names)}"


def _handlers(monkeypatch: pytest.MonkeyPatch, parts: tuple[Any, ...]) -> list[tuple[str, str | None]]:
    monkeypatch.setattr(handlers, "PARTS", parts)
    monkeypatch.setattr(handlers, "PART_CONDITIONS", {p.condition: p.label for p in parts})
    registry = kopf.OperatorRegistry()
    handlers.register(registry, handlers.build_context(OperatorSettings()))
    return [(str(h.id), h.reason and h.reason.value) for h in registry._changing.get_all_handlers()]


def test_registration_follows_what_each_part_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = _handlers(monkeypatch, (*PARTS, QueuesPart()))
    for part in (*PARTS, QueuesPart()):
        assert (part.name, "create") in registered
        assert ((part.name, "delete") in registered) is part.releases_on_delete
    assert ("dashboards", "delete") not in registered


def test_ready_waits_for_every_declared_part(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = (*PARTS, QueuesPart())
    monkeypatch.setattr(handlers, "PARTS", parts)
    monkeypatch.setattr(handlers, "PART_CONDITIONS", {p.condition: p.label for p in parts})
    body = kopf.Body({"metadata": {"name": "x", "namespace": "n", "generation": 1}, "status": {}})
    patch = kopf.Patch()
    for part in PARTS:
        handlers.record(body, patch, part, ready=True, reason="Provisioned", message="ok", fields={})
    assert patch.status["phase"] == "Provisioning"
    handlers.record(body, patch, parts[-1], ready=True, reason="Provisioned", message="ok", fields={})
    assert patch.status["phase"] == "Ready"
    assert patch.status["observedGeneration"] == 1
    ready = next(c for c in patch.status["conditions"] if c["type"] == status.READY)
    assert ready["message"] == "database, Redis, dashboards and queues are ready"
    assert [c["type"] for c in patch.status["conditions"]] == [p.condition for p in parts] + [status.READY]
