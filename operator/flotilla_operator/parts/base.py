"""What every part of a ServiceSpec shares: the context, the Part protocol, Secret I/O.

A part is one capability of a ServiceSpec (a database, a Redis ACL user, dashboards):
one module in this package exposing ``PART``, an object that follows ``Part``. It
declares its condition type, whether deleting the ServiceSpec must release something
outside Kubernetes, and whether a credential rotation concerns it; the handlers
(handlers.py) and the status (status.py) know parts only through that protocol.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import kopf

from flotilla_operator import dashboards, status
from flotilla_operator.kube import Kube, object_path
from flotilla_operator.metrics import OperatorMetrics
from flotilla_operator.postgres import PostgresAdmin
from flotilla_operator.redis_acl import RedisAdmin
from flotilla_operator.settings import OperatorSettings
from flotilla_operator.spec import ServiceSpec

#: Set this annotation to a new value (any token, e.g. a date) to rotate the database and
#: Redis passwords.
ROTATE_ANNOTATION: Final = "flotilla.dev/rotate-password"
#: On the Secrets: the rotation token their password was issued for.
ROTATED_FOR_ANNOTATION: Final = "flotilla.dev/rotated-for"
#: On the Secrets: when the credentials in them were issued; the previous ones work
#: until credential_grace_seconds later.
SWITCHED_AT_ANNOTATION: Final = "flotilla.dev/switched-at"
#: On the database Secret: the login role it named before the last switch.
PREVIOUS_USER_ANNOTATION: Final = "flotilla.dev/previous-user"


@dataclass
class Context:
    """Everything the handlers share; built once per operator run."""

    settings: OperatorSettings
    postgres: PostgresAdmin
    redis: RedisAdmin
    kube: Kube = field(default_factory=Kube)
    #: The separate Redis for event streams (redis.events=Dedicated); None: not offered.
    events_redis: RedisAdmin | None = None
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a part's reconcile did: for the condition, the Events and status fields."""

    reason: str
    message: str
    actions: list[str] = field(default_factory=list)
    fields: dict[str, Any] | None = None
    ready: bool = True


class Part(Protocol):
    #: The part's key under spec and status (spec.<name>.enabled switches it).
    name: str
    #: How the Ready condition's message names it.
    label: str
    #: Its condition type in status.conditions.
    condition: str
    #: Position among the parts: conditions, handlers and messages follow it.
    order: int
    #: Deleting the ServiceSpec must release something outside Kubernetes (a delete
    #: handler, hence kopf's finalizer); else owner references take what it made.
    releases_on_delete: bool
    #: The rotation annotation (ROTATE_ANNOTATION) issues it new credentials.
    rotates: bool

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome: ...

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]: ...


# --- Secrets -------------------------------------------------------------------------

async def read_secret(ctx: Context, namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(decoded data, annotations) of a Secret, or None if it does not exist."""
    secret = await ctx.kube.get(object_path("v1", "secrets", namespace, name))
    if secret is None:
        return None
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    return data, dict(secret.get("metadata", {}).get("annotations") or {})


async def write_secret(ctx: Context, body: kopf.Body, spec: ServiceSpec, name: str, data: Mapping[str, str],
                       annotations: Mapping[str, str] | None = None, *, existed: bool) -> str:
    """Write the Secret; ``existed``: ``data`` was derived from the Secret as read, which
    must then still be there (else the next reconcile starts over from its absence)."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": dashboards.common_labels(spec),
            "annotations": dict(annotations or {}),
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }
    kopf.adopt(obj, owner=body)
    applied = await ctx.kube.apply(obj, "secrets", must_exist=existed)  # Vanished: the next run starts over
    return "" if applied == "unchanged" else f"{applied} Secret {name}"



async def delete_secret(ctx: Context, spec: ServiceSpec, name: str) -> list[str]:
    """Remove a part's Secret when the part is disabled (on deletion, owner references do it)."""
    if await ctx.kube.delete(object_path("v1", "secrets", spec.namespace, name)):
        return [f"deleted Secret {name}"]
    return []



def in_grace(ctx: Context, switched_at: str | None) -> bool:
    """Whether credentials replaced at ``switched_at`` must still work."""
    if not switched_at:
        return False
    try:
        elapsed = status.seconds_since(switched_at)
    except ValueError:
        return False  # hand-edited annotation: no grace rather than an endless one
    return elapsed < ctx.settings.credential_grace_seconds
