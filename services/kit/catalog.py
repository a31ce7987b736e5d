"""The service list: the one place that names Flotilla's services and their ports.

Everything else (the CLI, the gateway's routing table, charts tests, skaffold tests,
the operator's dashboards) reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    name: str
    #: Port the service listens on locally (`flotilla up`); in a cluster every pod
    #: listens on CONTAINER_PORT and the Service maps it.
    local_port: int
    #: Python module path of the app factory, ``module:function``.
    factory: str
    #: Python path of the settings class, ``module:Class``.
    settings: str = ""
    #: Public path prefixes the gateway routes to this service.
    routes: tuple[str, ...] = ()
    #: Whether the service owns a database (and so a ServiceSpec with a database).
    has_database: bool = True
    #: One-line purpose, shown by `flotilla up` and in docs.
    summary: str = ""


CONTAINER_PORT = 8000
#: Every service also listens on its API port + this, for /metrics and the full /health
#: (``services.kit.ports``): 8000 -> 9000 in a container, 8003 -> 9003 locally.
METRICS_PORT_OFFSET = 1000
CONTAINER_METRICS_PORT = CONTAINER_PORT + METRICS_PORT_OFFSET

GATEWAY = ServiceInfo(
    name="gateway",
    local_port=8000,
    factory="services.gateway.app:create_app",
    settings="services.gateway.settings:GatewaySettings",
    has_database=False,
    summary="the only public entry: auth, rate limits, routing, merged OpenAPI",
)
AUTH = ServiceInfo(
    name="auth",
    local_port=8001,
    factory="services.auth.app:create_app",
    settings="services.auth.settings:AuthSettings",
    routes=("/api/v1/auth", "/.well-known/jwks.json"),
    summary="accounts, login, access/refresh tokens, JWKS",
)
USERS = ServiceInfo(
    name="users",
    local_port=8002,
    factory="services.users.app:create_app",
    settings="services.users.settings:UsersSettings",
    routes=("/api/v1/users",),
    summary="user profiles",
)
TASKS = ServiceInfo(
    name="tasks",
    local_port=8003,
    factory="services.tasks.app:create_app",
    settings="services.tasks.settings:TasksSettings",
    routes=("/api/v1/tasks",),
    summary="tasks CRUD with keyset pagination; emits task events",
)
DATA = ServiceInfo(
    name="data",
    local_port=8004,
    factory="services.data.app:create_app",
    settings="services.data.settings:DataSettings",
    routes=("/api/v1/stats", "/api/v1/recommendations"),
    summary="task-event consumer: per-user stats and recommendations",
)

#: Every service, gateway first. Order matters only for display.
SERVICES: tuple[ServiceInfo, ...] = (GATEWAY, AUTH, USERS, TASKS, DATA)
BACKENDS: tuple[ServiceInfo, ...] = tuple(s for s in SERVICES if s is not GATEWAY)


def env_prefix(name: str) -> str:
    """Environment variable prefix of a service's settings (``TASKS_`` for tasks)."""
    return f"{name.upper()}_"


def by_name(name: str) -> ServiceInfo:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"unknown service {name!r}; known: {', '.join(s.name for s in SERVICES)}")
