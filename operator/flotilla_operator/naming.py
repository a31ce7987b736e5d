"""Names and quoting: how ServiceSpec input becomes SQL identifiers, ACL rules and object names.

The CRD schema already limits every name (crd.yaml); the patterns here are read from that
schema, not copied, and are checked again right before SQL or an ACL command is built,
so a ServiceSpec that reached the API server some other way (an older CRD, a direct etcd
write, a bug in defaulting) still cannot smuggle anything into PostgreSQL or Redis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from functools import cache
from typing import Any, Final

from flotilla_operator import crd

#: Role/database names PostgreSQL or this operator reserve; the CRD rejects them too.
RESERVED_DATABASE_NAMES: Final = frozenset({"postgres", "template0", "template1", "public", "flotilla_admin"})
#: Written as COMMENT ON ROLE/DATABASE so the operator never adopts something it did not make.
OWNER_COMMENT_PREFIX: Final = "managed-by=flotilla-operator owner="
#: PostgreSQL truncates identifiers at 63 bytes; we stay well below.
PG_IDENTIFIER_MAX: Final = 63


class HostileNameError(ValueError):
    """A name that must not reach SQL, an ACL rule or a Kubernetes object name."""


def _property(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for key in path:
        node = node["properties"][key]
    return node


@cache
def _patterns() -> dict[str, tuple[re.Pattern[str], int]]:
    schema = crd.openapi_schema()
    fields = {
        "name": _property(schema, "metadata", "name"),
        "database": _property(schema, "spec", "database", "name"),
        "key_prefix": _property(schema, "spec", "redis", "keyPrefix"),
    }
    return {key: (re.compile(node["pattern"]), int(node["maxLength"])) for key, node in fields.items()}


def _check(kind: str, value: str) -> str:
    pattern, max_length = _patterns()[kind]
    # fullmatch, not search: the CRD's patterns are anchored, but a stray '$' before a
    # trailing newline would pass re.match; fullmatch closes that gap.
    if not isinstance(value, str) or len(value) > max_length or not pattern.fullmatch(value):
        raise HostileNameError(f"{kind} {value!r} must match {pattern.pattern} and be at most {max_length} chars")
    return value


def check_object_name(name: str) -> str:
    return _check("name", name)


def check_namespace(namespace: str) -> str:
    # RFC 1123 label, as Kubernetes itself enforces for namespaces.
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", namespace or ""):
        raise HostileNameError(f"namespace {namespace!r} is not an RFC 1123 label")
    return namespace


def check_database_name(name: str) -> str:
    _check("database", name)
    if name in RESERVED_DATABASE_NAMES or name.startswith("pg_"):
        raise HostileNameError(f"database name {name!r} is reserved")
    return name


def check_key_prefix(prefix: str) -> str:
    return _check("key_prefix", prefix)


#: Kubernetes label syntax (apimachinery's IsQualifiedName / IsValidLabelValue).
_LABEL_NAME: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Labels a ServiceSpec asks for, if Kubernetes would accept every key and value.

    The CRD schema checks the values; keys of a free-form map only the operator can check.
    """
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if not _LABEL_NAME.fullmatch(name) or (
            prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))
        ):
            raise HostileNameError(f"label key {key!r} is not a valid Kubernetes label key")
        if not isinstance(value, str) or not (value == "" or _LABEL_NAME.fullmatch(value)):
            raise HostileNameError(f"label value {value!r} (key {key}) is not a valid Kubernetes label value")
    return labels


def default_database_name(object_name: str) -> str:
    return object_name.replace("-", "_")


def default_key_prefix(object_name: str) -> str:
    return f"{object_name}:"


def login_roles(owner_role: str) -> tuple[str, str]:
    """The two login roles of a database owned by ``owner_role``; the Secret names one.

    Two, so a rotation can hand out a fresh password on the idle one while pods still
    log in with the other's (see docs/operator.md, "Changing, deleting, rotating").
    Database names are at most 48 characters, so the suffix always fits in 63 bytes.
    """
    check_database_name(owner_role)
    return f"{owner_role}_a", f"{owner_role}_b"


def redis_username(namespace: str, name: str) -> str:
    # Dots never occur in either part, so the user name maps back to exactly one object,
    # and it survives as the user part of a redis:// URL (no ':' or '@').
    return f"flotilla.{check_namespace(namespace)}.{check_object_name(name)}"


def owner_comment(namespace: str, name: str) -> str:
    return f"{OWNER_COMMENT_PREFIX}{check_namespace(namespace)}/{check_object_name(name)}"


def database_secret_name(name: str) -> str:
    return f"{name}-database"


def redis_secret_name(name: str) -> str:
    return f"{name}-redis"


def dashboard_configmap_name(name: str) -> str:
    return f"{name}-dashboard"


def prometheus_rule_name(name: str) -> str:
    return f"{name}-slo"


def quote_ident(identifier: str) -> str:
    """Quote a PostgreSQL identifier the way the server's quote_ident() does.

    asyncpg binds only values ($1), never identifiers, and utility statements (CREATE
    ROLE, CREATE DATABASE, ALTER ROLE ... PASSWORD) accept no bind parameters at all, so
    names are spliced into the SQL text. Doubling embedded quotes makes any string a
    single identifier; NUL cannot be represented in PostgreSQL text, so it is refused
    rather than silently truncating the name.
    """
    if "\x00" in identifier:
        raise HostileNameError("identifier contains NUL")
    if not identifier or len(identifier.encode()) > PG_IDENTIFIER_MAX:
        raise HostileNameError(f"identifier must be 1..{PG_IDENTIFIER_MAX} bytes")
    return '"' + identifier.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a string literal for statements that take no bind parameters.

    Assumes standard_conforming_strings=on (the default since 9.1); backslashes are
    refused so the literal means the same under either setting.
    """
    if "\x00" in value or "\\" in value:
        raise HostileNameError("literal contains NUL or backslash")
    return "'" + value.replace("'", "''") + "'"


def generate_password() -> str:
    # URL-safe alphabet: goes into postgresql:// and redis:// URLs without escaping.
    return secrets.token_urlsafe(32)


def scram_sha256_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677).

    Sending the verifier instead of the password keeps the plaintext out of the
    server's statement log and pg_stat_statements.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def redis_password_hash(password: str) -> str:
    """What ACL GETUSER reports for a password: its SHA-256 in hex."""
    return hashlib.sha256(password.encode()).hexdigest()
