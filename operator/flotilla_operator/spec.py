"""A ServiceSpec, defaulted and validated the way the API server would, as plain values.

Defaults and validation rules come from the CRD's openAPIV3Schema (crd.yaml), so the
operator and the API server agree by construction. The API server has normally done
both already; repeating them costs microseconds and protects SQL/ACL from anything that
slipped past (see naming.py).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import jsonschema

from flotilla_operator import crd, naming

DeletionPolicy = Literal["Retain", "Delete"]


class InvalidSpec(ValueError):
    """The ServiceSpec cannot be acted on as written; only a spec change can fix it."""


@dataclass(frozen=True, slots=True)
class DatabasePart:
    enabled: bool
    name: str
    deletion_policy: DeletionPolicy

    @property
    def role(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class RedisPart:
    enabled: bool
    key_prefix: str
    username: str
    #: "Dedicated": the event stream on the operator's separate events Redis.
    events: Literal["Shared", "Dedicated"] = "Shared"


@dataclass(frozen=True, slots=True)
class DashboardsPart:
    enabled: bool
    availability: float
    latency_p95_ms: int
    #: Extra labels for the ServiceMonitor and PrometheusRule (spec.dashboards.monitoringLabels).
    monitoring_labels: dict[str, str] = field(default_factory=dict)
    #: Grafana folder; empty: the operator's default.
    folder: str = ""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    namespace: str
    name: str
    database: DatabasePart
    redis: RedisPart
    dashboards: DashboardsPart

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.name}"


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: missing keys get their default,
    then defaulted and present objects are walked in turn."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = apply_defaults(sub, value[key])
    return value


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(crd.openapi_schema())


def schema_errors(obj: Mapping[str, Any]) -> list[str]:
    """Messages for every way ``obj`` breaks the CRD schema (after defaulting)."""
    candidate = apply_defaults(crd.openapi_schema(), copy.deepcopy(dict(obj)))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(_validator().iter_errors(candidate), key=lambda e: list(e.absolute_path))
    ]


def parse(body: Mapping[str, Any]) -> ServiceSpec:
    """Default, validate and flatten a ServiceSpec object; raise InvalidSpec if unusable."""
    meta = body.get("metadata", {})
    obj: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": meta.get("name")},
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
    }
    obj = {key: value for key, value in obj.items() if value is not None}
    errors = schema_errors(obj)
    if errors:
        raise InvalidSpec("; ".join(errors))
    apply_defaults(crd.openapi_schema(), obj)
    spec: dict[str, Any] = obj["spec"]
    try:
        namespace = naming.check_namespace(str(meta.get("namespace", "")))
        name = naming.check_object_name(str(meta.get("name", "")))
        db_name = spec["database"].get("name") or naming.default_database_name(name)
        prefix = spec["redis"].get("keyPrefix") or naming.default_key_prefix(name)
        return ServiceSpec(
            namespace=namespace,
            name=name,
            database=DatabasePart(
                enabled=bool(spec["database"]["enabled"]),
                name=naming.check_database_name(db_name),
                deletion_policy=spec["database"]["deletionPolicy"],
            ),
            redis=RedisPart(
                enabled=bool(spec["redis"]["enabled"]),
                key_prefix=naming.check_key_prefix(prefix),
                username=naming.redis_username(namespace, name),
                events=spec["redis"]["events"],
            ),
            dashboards=DashboardsPart(
                enabled=bool(spec["dashboards"]["enabled"]),
                availability=float(spec["dashboards"]["slo"]["availability"]),
                latency_p95_ms=int(spec["dashboards"]["slo"]["latencyP95Ms"]),
                monitoring_labels=naming.check_labels(dict(spec["dashboards"].get("monitoringLabels") or {})),
                folder=str(spec["dashboards"].get("folder") or ""),
            ),
        )
    except naming.HostileNameError as exc:
        raise InvalidSpec(str(exc)) from exc
