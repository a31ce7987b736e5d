"""Is this a good name for a new service? One function, one-line errors.

A service name becomes a Python package (``services.<name>``), Kubernetes names
(``<release>-<name>``, a DNS-1123 label), a PostgreSQL database and role
(``<name>``, ``<prefix>_<name>`` locally), a Redis user and key prefix (``<name>:``),
an environment prefix (``<NAME>_``), a Helm values key and an image (``flotilla-<name>``).
The intersection of what all of those accept is: a lowercase ASCII letter, then
lowercase letters and digits. No ``-`` (not Python) and no ``_`` (not DNS-1123).
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Iterable

from services.kit import catalog

#: Room for "<release>-<name>-<suffix>" under Kubernetes' 63 characters, and for
#: "<prefix>_<name>" under PostgreSQL's 63-byte identifiers.
MAX_LENGTH = 30
_SHAPE = re.compile(r"[a-z][a-z0-9]*")
_ROUTE = re.compile(r"/api/v[0-9]+(/[a-z0-9][a-z0-9-]*)+")

#: Names something in the repository, the charts or the cluster already uses.
RESERVED = frozenset({
    # services/ modules and the repository's own packages
    "kit", "cli", "launcher", "serve", "services", "tests", "operator", "loadtest", "scripts", "templates",
    "migrations", "flotilla",
    # top-level keys of charts/flotilla/values.yaml and the dev servers' Services
    "global", "ingress", "httproute", "devservers", "forwardingtoken", "forwarding", "postgresql", "postgres",
    "redis", "prometheus", "grafana",
    # Kubernetes and HTTP words that would read as something else
    "default", "kube", "kubernetes", "system", "api", "metrics", "health", "docs", "openapi", "static",
    "admin", "root", "internal", "public", "service", "app",
})

#: SQL reserved words (PostgreSQL's own plus SQL-standard ones it rejects unquoted).
_SQL_RESERVED_WORDS = """
all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate
collation column concurrently constraint create cross current_catalog current_date current_role
current_schema current_time current_timestamp current_user default deferrable desc distinct do else end
except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into
is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on
only or order outer overlaps placing primary references returning right select session_user similar some
symmetric system_user table tablesample then to trailing true union unique user using variadic verbose when
where window with
"""
SQL_RESERVED = frozenset(_SQL_RESERVED_WORDS.split())


class BadServiceName(ValueError):
    """The name (or route) cannot be used; ``str()`` is one line saying why."""


def default_route(name: str) -> str:
    return f"/api/v1/{name}"


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def validate_service_name(
    name: str, *, route: str | None = None, services: Iterable[catalog.ServiceInfo] | None = None
) -> str:
    """``name`` if a new service may take it (and ``route``), else raise :class:`BadServiceName`."""
    existing = tuple(catalog.SERVICES if services is None else services)
    if not name:
        raise BadServiceName("service name is empty")
    if not _SHAPE.fullmatch(name):
        raise BadServiceName(
            f"bad service name {name!r}: use a lowercase letter then lowercase letters or digits"
            " (it is a Python package, a DNS-1123 label, a PostgreSQL and Redis name: no '-', '_', '.', capitals)"
        )
    if len(name) > MAX_LENGTH:
        raise BadServiceName(f"bad service name {name!r}: longer than {MAX_LENGTH} characters "
                             "(Kubernetes and PostgreSQL names are built from it)")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise BadServiceName(f"bad service name {name!r}: a Python keyword")
    if name in sys.stdlib_module_names:
        raise BadServiceName(f"bad service name {name!r}: shadows the Python standard library module {name!r}")
    if name in SQL_RESERVED:
        raise BadServiceName(f"bad service name {name!r}: a reserved word in SQL (PostgreSQL database/role name)")
    if name in RESERVED:
        raise BadServiceName(f"bad service name {name!r}: reserved (used by the platform itself)")
    for service in existing:
        if service.name == name:
            raise BadServiceName(f"service {name!r} already exists (services/kit/catalog.py)")
    route = default_route(name) if route is None else route
    if not _ROUTE.fullmatch(route):
        raise BadServiceName(f"bad route {route!r}: use /api/v<N>/<lowercase words, digits, '-'>")
    for service in existing:
        for taken in service.routes:
            if _overlaps(route, taken):
                raise BadServiceName(f"route {route!r} overlaps {taken!r} of service {service.name!r}")
    return name
