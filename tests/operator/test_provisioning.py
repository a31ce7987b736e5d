"""Apply a ServiceSpec → database, Redis user, dashboards, Secrets and a Ready status."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from services.kit.events import TASK_EVENTS_STREAM
from tests.operator.harness import Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_apply_makes_everything_ready(cluster: Cluster, operator, namespace: str, name: str) -> None:
    await cluster.apply(namespace, name)
    obj = await cluster.wait_phase(namespace, name, "Ready")
    status = obj["status"]
    assert status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"DatabaseReady", "RedisReady", "DashboardsReady", "Ready"}
    for cond in conditions.values():
        assert cond["status"] == "True", cond
        assert cond["observedGeneration"] == 1
        assert cond["lastTransitionTime"].endswith("Z")
    db = name.replace("-", "_")
    assert {k: v for k, v in status["database"].items() if k != "switchedAt"} == {
        "name": db, "secretName": f"{name}-database", "activeUser": f"{db}_a",
    }
    assert status["database"]["switchedAt"].endswith("Z")
    assert status["redis"]["secretName"] == f"{name}-redis"
    assert status["dashboards"]["configMapName"] == f"{name}-dashboard"


async def test_database_url_works(cluster: Cluster, operator, namespace: str, name: str) -> None:
    await cluster.apply(namespace, name)
    await cluster.wait_phase(namespace, name, "Ready")
    secret = await cluster.secret(namespace, f"{name}-database")
    assert secret is not None
    assert set(secret) == {"DATABASE_URL", "host", "port", "user", "password", "dbname"}
    conn = await asyncpg.connect(secret["DATABASE_URL"])
    try:
        await conn.execute("CREATE TABLE tasks (id serial PRIMARY KEY, title text NOT NULL)")
        await conn.execute("INSERT INTO tasks (title) VALUES ($1)", "hello")
        assert await conn.fetchval("SELECT title FROM tasks") == "hello"
        assert await conn.fetchval("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles"
                                   " WHERE rolname = current_user") is False
    finally:
        await conn.close()


async def test_public_cannot_connect_to_the_database(cluster: Cluster, operator, namespace: str,
                                                     name: str, postgres_server) -> None:
    other = f"{name}-other"
    await cluster.apply(namespace, name)
    await cluster.apply(namespace, other)
    await cluster.wait_phase(namespace, name, "Ready")
    await cluster.wait_phase(namespace, other, "Ready")
    mine = await cluster.secret(namespace, f"{name}-database")
    theirs = await cluster.secret(namespace, f"{other}-database")
    assert mine
    assert theirs
    # The other service's role may log in, but not into this service's database.
    url = theirs["DATABASE_URL"].rsplit("/", 1)[0] + "/" + mine["dbname"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(url)


async def test_redis_user_is_confined_to_its_prefix(cluster: Cluster, operator, namespace: str,
                                                    name: str) -> None:
    await cluster.apply(namespace, name)
    await cluster.wait_phase(namespace, name, "Ready")
    secret = await cluster.secret(namespace, f"{name}-redis")
    assert secret is not None
    prefix = secret["keyPrefix"]
    assert prefix == f"{name}:"
    client = aioredis.Redis.from_url(secret["REDIS_URL"])
    try:
        await client.set(f"{prefix}k", "v", ex=60)
        assert await client.get(f"{prefix}k") == b"v"
        assert await client.expire(f"{prefix}k", 30)
        assert [k async for k in client.scan_iter(match=f"{prefix}*")] == [f"{prefix}k".encode()]
        await client.xadd(f"{prefix}events", {"a": "1"})
        await client.xgroup_create(f"{prefix}events", "g", id="0")
        entries = await client.xreadgroup("g", "c", {f"{prefix}events": ">"}, count=1)
        (_, [(entry_id, _)]), = entries
        assert await client.xack(f"{prefix}events", "g", entry_id) == 1
        await client.xautoclaim(f"{prefix}events", "g", "c", min_idle_time=0)
        assert await client.eval("return redis.call('GET', KEYS[1])", 1, f"{prefix}k") == b"v"
        sha = await client.script_load("return 1")
        assert await client.evalsha(sha, 0) == 1
        assert await client.delete(f"{prefix}k") == 1
        # the shared task-event stream (tasks produces, data consumes) is reachable too
        await client.xadd(TASK_EVENTS_STREAM, {"probe": "1"})
        assert await client.xlen(TASK_EVENTS_STREAM) >= 1
        for forbidden in (
            client.set("other:k", "v"),
            client.get("other:k"),
            client.keys("*"),
            client.flushall(),
            client.flushdb(),
            client.config_get("*"),
            client.execute_command("ACL", "LIST"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await forbidden
    finally:
        await client.aclose()


async def test_monitors_carry_the_labels_prometheus_selects(cluster: Cluster, operator, namespace: str,
                                                            name: str) -> None:
    await cluster.apply(namespace, name, {"dashboards": {"monitoringLabels": {"team": "a"}, "folder": "Team A"}})
    await cluster.wait_phase(namespace, name, "Ready")
    for api, object_name in (("monitoring.coreos.com/v1/servicemonitors", name),
                             ("monitoring.coreos.com/v1/prometheusrules", f"{name}-slo")):
        obj = await cluster.get(namespace, object_name, api=api)
        assert obj is not None, object_name
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # operator-wide default
        assert obj["metadata"]["labels"]["team"] == "a"  # the ServiceSpec's own
    configmap = await cluster.get(namespace, f"{name}-dashboard", api="v1/configmaps")
    assert configmap is not None
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "Team A"
