"""Update, delete (Retain/Delete), restart, drift repair, outage — against real servers.

Rotation has its own module (test_rotation.py).
"""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
from flotilla_operator.settings import OperatorSettings

from tests.operator.harness import Cluster, running_operator
from tests.support.polling import eventually
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _admin(postgres_server: PostgresServer) -> asyncpg.Connection:
    return await asyncpg.connect(postgres_server.dsn("postgres", driver="postgresql"))


async def _role(postgres_server: PostgresServer, role: str) -> asyncpg.Record | None:
    conn = await _admin(postgres_server)
    try:
        return await conn.fetchrow("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role)
    finally:
        await conn.close()


async def _database_exists(postgres_server: PostgresServer, db: str) -> bool:
    conn = await _admin(postgres_server)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", db))
    finally:
        await conn.close()


async def _acl_user(redis_server: RedisServer, username: str) -> object:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        return await client.execute_command("ACL", "GETUSER", username)
    finally:
        await client.aclose()


async def test_disabling_redis_removes_only_redis(cluster: Cluster, operator, namespace: str, name: str,
                                                  redis_server: RedisServer, postgres_server) -> None:
    await cluster.apply(namespace, name)
    await cluster.wait_phase(namespace, name, "Ready")
    username = f"flotilla.{namespace}.{name}"
    assert await _acl_user(redis_server, username) is not None

    await cluster.patch_spec(namespace, name, {"redis": {"enabled": False}})
    obj = await cluster.wait_phase(namespace, name, "Ready")
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 2
    redis_condition = await cluster.condition(namespace, name, "RedisReady")
    assert redis_condition is not None
    assert redis_condition["reason"] == "Disabled"
    assert await _acl_user(redis_server, username) is None
    assert await cluster.secret(namespace, f"{name}-redis") is None
    assert "redis" not in obj["status"]
    # The database part is untouched.
    assert await cluster.secret(namespace, f"{name}-database") is not None
    assert await _database_exists(postgres_server, name.replace("-", "_"))


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
async def test_delete_honours_deletion_policy(cluster: Cluster, operator, namespace: str, name: str,
                                              policy: str, postgres_server: PostgresServer,
                                              redis_server: RedisServer) -> None:
    db = name.replace("-", "_")
    await cluster.apply(namespace, name, {"database": {"deletionPolicy": policy}})
    await cluster.wait_phase(namespace, name, "Ready")
    secret = await cluster.secret(namespace, f"{name}-database")
    assert secret is not None
    conn = await asyncpg.connect(secret["DATABASE_URL"])
    await conn.execute("CREATE TABLE keep (v int)")
    await conn.close()
    secret_obj = await cluster.get(namespace, f"{name}-database", api="v1/secrets")
    owner = await cluster.get(namespace, name)
    assert secret_obj is not None
    assert owner is not None
    # Secrets go with the ServiceSpec through Kubernetes garbage collection.
    assert secret_obj["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]

    await cluster.delete(namespace, name)
    await cluster.wait_gone(namespace, name)
    collected = await cluster.collect_garbage(owner["metadata"]["uid"])
    assert f"secrets/{name}-database" in collected
    assert f"configmaps/{name}-dashboard" in collected
    assert await _acl_user(redis_server, f"flotilla.{namespace}.{name}") is None
    if policy == "Retain":
        assert await _database_exists(postgres_server, db)
        for name_ in (db, f"{db}_a", f"{db}_b"):
            role = await _role(postgres_server, name_)
            assert role is not None
            assert role["rolcanlogin"] is False
        data = await asyncpg.connect(postgres_server.dsn(db, driver="postgresql"))
        assert await data.fetchval("SELECT count(*) FROM keep") == 0  # the table survived
        await data.close()
        # Re-creating the ServiceSpec adopts the retained database with a new password.
        await cluster.apply(namespace, name, {"database": {"deletionPolicy": policy}})
        await cluster.wait_phase(namespace, name, "Ready")
        again = await cluster.secret(namespace, f"{name}-database")
        assert again is not None
        assert again["password"] != secret["password"]
        conn = await asyncpg.connect(again["DATABASE_URL"])
        assert await conn.fetchval("SELECT count(*) FROM keep") == 0
        await conn.close()
    else:
        assert not await _database_exists(postgres_server, db)
        for name_ in (db, f"{db}_a", f"{db}_b"):
            assert await _role(postgres_server, name_) is None


async def test_restart_does_no_duplicate_work(cluster: Cluster, operator_settings: OperatorSettings,
                                              namespace: str, name: str) -> None:
    async with running_operator(operator_settings):
        await cluster.apply(namespace, name)
        await cluster.wait_phase(namespace, name, "Ready")
        before = await cluster.secret(namespace, f"{name}-database")
        redis_before = await cluster.secret(namespace, f"{name}-redis")
    writes_before = {p: len(cluster.writes(p)) for p in ("secrets", "configmaps", "servicemonitors",
                                                         "prometheusrules")}
    async with running_operator(operator_settings) as ctx:
        # Resume handlers run for every existing object on start; wait until they did.
        async def resumed() -> bool:
            samples = ctx.metrics.reconciles.collect()[0].samples
            return sum(s.value for s in samples if s.labels.get("trigger") == "resume") >= 3
        await eventually(resumed, message="resume handlers")
        await cluster.wait_phase(namespace, name, "Ready")
    assert await cluster.secret(namespace, f"{name}-database") == before
    assert await cluster.secret(namespace, f"{name}-redis") == redis_before
    assert {p: len(cluster.writes(p)) for p in writes_before} == writes_before
    assert before is not None
    conn = await asyncpg.connect(before["DATABASE_URL"])  # the password was not changed
    await conn.close()


async def test_drift_is_repaired(cluster: Cluster, operator, namespace: str, name: str,
                                 postgres_server: PostgresServer, redis_server: RedisServer) -> None:
    db = name.replace("-", "_")
    await cluster.apply(namespace, name)
    await cluster.wait_phase(namespace, name, "Ready")
    secret = await cluster.secret(namespace, f"{name}-database")
    assert secret is not None

    conn = await _admin(postgres_server)
    try:
        await conn.execute(f'DROP DATABASE "{db}"')
        for role in (f"{db}_a", f"{db}_b", db):
            await conn.execute(f'DROP ROLE "{role}"')
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.execute_command("ACL", "SETUSER", f"flotilla.{namespace}.{name}", "allkeys", "+@all")
    finally:
        await client.aclose()
    lost_redis = await cluster.secret(namespace, f"{name}-redis")
    assert lost_redis is not None
    await cluster.delete(namespace, f"{name}-redis", api="v1/secrets")

    async def repaired() -> bool:
        try:
            restored = await asyncpg.connect(secret["DATABASE_URL"])
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidCatalogNameError):
            return False
        await restored.close()
        return await cluster.secret(namespace, f"{name}-redis") is not None
    await eventually(repaired, message="role, database and Redis Secret restored by the timer")

    redis_secret = await cluster.secret(namespace, f"{name}-redis")
    assert redis_secret is not None
    assert redis_secret["password"] != lost_redis["password"]
    # Pods started from the deleted Secret keep their password for the grace period.
    for url in (lost_redis["REDIS_URL"], redis_secret["REDIS_URL"]):
        client = aioredis.Redis.from_url(url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
    confined = aioredis.Redis.from_url(redis_secret["REDIS_URL"])
    try:
        async def reconfined() -> bool:
            try:
                await confined.get("elsewhere")
            except Exception:  # NOPERM once the rules are back; auth error while repairing
                return True
            return False
        await eventually(reconfined, message="ACL user confined again")
    finally:
        await confined.aclose()


async def test_postgres_down_at_create_degrades_then_recovers(
    cluster: Cluster, operator, namespace: str, name: str, postgres_server: PostgresServer,
) -> None:
    postgres_server.stop()
    try:
        await cluster.apply(namespace, name)
        obj = await cluster.wait_phase(namespace, name, "Degraded")
        database = next(c for c in obj["status"]["conditions"] if c["type"] == "DatabaseReady")
        assert database["status"] == "False"
        assert database["reason"] == "DependencyUnavailable"
        # Redis and dashboards do not wait for PostgreSQL.
        assert await cluster.secret(namespace, f"{name}-redis") is not None
    finally:
        postgres_server.start()
    await cluster.wait_phase(namespace, name, "Ready")
    secret = await cluster.secret(namespace, f"{name}-database")
    assert secret is not None
    conn = await asyncpg.connect(secret["DATABASE_URL"])
    await conn.close()


@pytest.mark.parametrize("monitoring_crds", [False])
async def test_missing_monitoring_crds_are_reported(cluster: Cluster, operator, namespace: str, name: str,
                                                    monitoring_crds: bool) -> None:
    await cluster.apply(namespace, name)
    obj = await cluster.wait_phase(namespace, name, "Degraded")
    condition = next(c for c in obj["status"]["conditions"] if c["type"] == "DashboardsReady")
    assert condition["status"] == "False"
    assert condition["reason"] == "MonitoringCRDsMissing"
    assert "monitoring.coreos.com" in condition["message"]
    configmap = await cluster.get(namespace, f"{name}-dashboard", api="v1/configmaps")
    assert configmap is not None
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
