"""Hostile input: rejected by the CRD schema, and — defence in depth — by the operator."""

from __future__ import annotations

import asyncpg
import kubernetes_validate
import pytest
import redis.asyncio as aioredis
from flotilla_operator import crd, naming, spec

from tests.operator.harness import Cluster
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer

HOSTILE_DATABASE_NAMES = [
    'x"; DROP DATABASE postgres; --',
    "tasks; SELECT 1",
    "a b",
    "tasks*",
    "Tasks",
    "x" * 49,
    "postgres",
    "template1",
    "pg_monitor",
    "",
    "tasks\x00",
]
HOSTILE_PREFIXES = ["*", "tasks*:", "tasks", "a b:", "tasks:*", "[a]:", "x" * 48 + ":", "~all:", "a\\:"]
HOSTILE_OBJECT_NAMES = ["Tasks", "tasks_1", "a" * 41, "x;y", "-tasks", "tasks-", "a.b"]


def _obj(name: str = "tasks", **spec_: object) -> dict[str, object]:
    return {"apiVersion": "flotilla.dev/v1alpha1", "kind": "ServiceSpec",
            "metadata": {"name": name, "namespace": "flotilla"}, "spec": spec_}


def test_crd_is_a_valid_structural_crd() -> None:
    manifest = crd.manifest()
    kubernetes_validate.validate(manifest, desired_version="1.30", strict=True)
    version = manifest["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase", "Database", "Redis", "Dashboards", "Age"]
    assert "ss" in manifest["spec"]["names"]["shortNames"]
    # A structural schema: no preserve-unknown-fields except kopf's own corner.
    text = crd.source_text()
    assert text.count("x-kubernetes-preserve-unknown-fields") == 1


def test_crd_copies_are_identical() -> None:
    assert crd.stale_copies() == [], "run: python -m flotilla_operator.crd --write"


def test_valid_spec_defaults_like_the_api_server() -> None:
    parsed = spec.parse(_obj(name="my-svc"))
    assert parsed.database.name == "my_svc"
    assert parsed.database.deletion_policy == "Retain"
    assert parsed.redis.key_prefix == "my-svc:"
    assert parsed.dashboards.availability == 99.9


@pytest.mark.parametrize("bad", HOSTILE_DATABASE_NAMES)
def test_schema_rejects_hostile_database_names(bad: str) -> None:
    assert spec.schema_errors(_obj(database={"name": bad}))
    with pytest.raises(spec.InvalidSpec):
        spec.parse(_obj(database={"name": bad}))


@pytest.mark.parametrize("bad", HOSTILE_PREFIXES)
def test_schema_rejects_hostile_key_prefixes(bad: str) -> None:
    assert spec.schema_errors(_obj(redis={"keyPrefix": bad}))


@pytest.mark.parametrize("bad", HOSTILE_OBJECT_NAMES)
def test_schema_rejects_hostile_object_names(bad: str) -> None:
    assert spec.schema_errors(_obj(name=bad))


@pytest.mark.parametrize("bad", [{"database": {"deletionPolicy": "Drop"}},
                                 {"dashboards": {"slo": {"availability": 100}}},
                                 {"dashboards": {"slo": {"latencyP95Ms": 0}}},
                                 {"database": {"enabled": "yes"}}])
def test_schema_rejects_bad_values(bad: dict[str, object]) -> None:
    assert spec.schema_errors(_obj(**bad))


@pytest.mark.parametrize("bad", ['a"b', "a\x00b", "", "x" * 64])
def test_quote_ident_refuses_or_neutralises(bad: str) -> None:
    if "\x00" in bad or not bad or len(bad) > 63:
        with pytest.raises(naming.HostileNameError):
            naming.quote_ident(bad)
    else:
        assert naming.quote_ident(bad) == '"a""b"'


async def test_quote_ident_matches_postgres(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn("postgres", driver="postgresql"))
    try:
        for name in ['tasks', 'Tasks', 'a"b', 'x"; DROP TABLE y; --', "sp ace"]:
            assert await conn.fetchval(f"SELECT {naming.quote_literal(name)}::name = $1", name)
            quoted = await conn.fetchval(f"SELECT quote_ident({naming.quote_literal(name)})")
            # Same identifier as the server's own quoting (which leaves safe names bare).
            assert naming.quote_ident(name).strip('"') == quoted.strip('"')
    finally:
        await conn.close()


def test_scram_verifier_is_accepted_format() -> None:
    verifier = naming.scram_sha256_verifier("secret", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:")


@pytest.mark.postgres
@pytest.mark.redis
async def test_operator_refuses_what_slipped_past_the_schema(
    cluster: Cluster, operator, namespace: str, postgres_server: PostgresServer, redis_server: RedisServer,
) -> None:
    hostile = 'x"; DROP ROLE postgres; --'
    await cluster.create_raw({  # as if validation were off (older CRD, broken admission)
        "apiVersion": "flotilla.dev/v1alpha1", "kind": "ServiceSpec",
        "metadata": {"name": "hostile", "namespace": namespace},
        "spec": {"database": {"enabled": True, "name": hostile}, "redis": {"keyPrefix": "*"}},
    })
    with pytest.raises(ValueError, match="reject"):
        await cluster.apply(namespace, "hostile2", {"database": {"name": hostile}})

    async def failed() -> dict[str, object] | None:
        obj = await cluster.get(namespace, "hostile")
        status = (obj or {}).get("status") or {}
        types = {c["type"] for c in status.get("conditions") or []}
        return obj if status.get("phase") == "Failed" and {"DatabaseReady", "RedisReady"} <= types else None
    obj = await eventually(failed, message="phase Failed")
    reasons = {c["type"]: c["reason"] for c in obj["status"]["conditions"]}  # type: ignore[index]
    assert reasons["DatabaseReady"] == "InvalidSpec"
    assert reasons["RedisReady"] == "InvalidSpec"
    # Nothing reached PostgreSQL or Redis.
    conn = await asyncpg.connect(postgres_server.dsn("postgres", driver="postgresql"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'x%'") == 0
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'") == 1
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        users = await client.execute_command("ACL", "USERS")
        assert not any(b"hostile" in u for u in users)
    finally:
        await client.aclose()
    assert await cluster.secret(namespace, "hostile-database") is None
