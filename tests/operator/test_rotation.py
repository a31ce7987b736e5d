"""Credential rotation without downtime: both credentials work during the grace period.

The grace period ends in these tests by restarting the operator with
credential_grace_seconds=0 (its first reconcile then retires the previous credentials),
so "still works during grace" and "refused after" are both checked without racing a clock.
"""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from flotilla_operator import naming, workloads
from flotilla_operator.handlers import ROTATE_ANNOTATION, Context
from flotilla_operator.settings import OperatorSettings

from tests.operator.harness import Cluster, running_operator
from tests.support.polling import eventually
from tests.support.servers import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

_REFUSED = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


def _without_grace(settings: OperatorSettings) -> OperatorSettings:
    return settings.model_copy(update={"credential_grace_seconds": 0.0})


async def _timer_ticks(ctx: Context, count: int) -> None:
    """Wait until the drift timer has reconciled both credential parts ``count`` more times."""
    def ticks() -> dict[str, float]:
        samples = next(iter(ctx.metrics.reconciles.collect())).samples
        return {part: sum(s.value for s in samples if s.name.endswith("_total")
                          and s.labels.get("trigger") == "timer" and s.labels.get("part") == part)
                for part in ("database", "redis")}
    start = ticks()

    async def ticked() -> bool:
        now = ticks()
        return all(now[part] >= start[part] + count for part in start)
    await eventually(ticked, message=f"{count} drift timer runs")


async def _changed_secret(cluster: Cluster, namespace: str, name: str, old: dict[str, str]) -> dict[str, str]:
    async def changed() -> dict[str, str] | None:
        new = await cluster.secret(namespace, name)
        return new if new and new["password"] != old["password"] else None
    return await eventually(changed, message=f"Secret {name} rotated")


async def _refused(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url)
    except _REFUSED:
        return True
    await conn.close()
    return False


async def _redis_refused(url: str) -> bool:
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    except redis.exceptions.AuthenticationError:
        return True
    finally:
        await client.aclose()
    return False


async def _redis_roundtrip(url: str, key: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.set(key, "v", ex=60)
        assert await client.get(key) == b"v"
    finally:
        await client.aclose()


async def test_rotation_keeps_old_credentials_working_until_the_grace_period_ends(
    cluster: Cluster, operator_settings: OperatorSettings, namespace: str, name: str,
    postgres_server: PostgresServer,
) -> None:
    db = name.replace("-", "_")
    async with running_operator(operator_settings) as ctx:
        await cluster.apply(namespace, name)
        await cluster.wait_phase(namespace, name, "Ready")
        old = await cluster.secret(namespace, f"{name}-database")
        old_redis = await cluster.secret(namespace, f"{name}-redis")
        assert old is not None
        assert old_redis is not None
        assert old["user"] == f"{db}_a"
        session = await asyncpg.connect(old["DATABASE_URL"])
        try:
            await session.execute("CREATE TABLE made_before (v int)")
            await cluster.annotate(namespace, name, {ROTATE_ANNOTATION: "2026-01-01"})
            new = await _changed_secret(cluster, namespace, f"{name}-database", old)
            new_redis = await _changed_secret(cluster, namespace, f"{name}-redis", old_redis)
            assert new["user"] == f"{db}_b"
            assert new["DATABASE_URL"].startswith(f"postgresql://{db}_b:{new['password']}@")
            assert new_redis["REDIS_URL"] != old_redis["REDIS_URL"]

            # Drift checks during the grace period leave the previous credentials alone.
            await _timer_ticks(ctx, 2)
            obj = await cluster.get(namespace, name)
            assert obj is not None
            assert obj["status"]["database"]["activeUser"] == f"{db}_b"
            assert obj["status"]["database"]["previousUser"] == f"{db}_a"
            assert obj["status"]["database"]["switchedAt"].endswith("Z")
            assert obj["status"]["redis"]["previousPasswordAccepted"] is True

            old_login = await asyncpg.connect(old["DATABASE_URL"])  # a new login, old Secret
            new_login = await asyncpg.connect(new["DATABASE_URL"])
            try:
                # Both logins act as the owner role: what one creates, the other can use.
                await new_login.execute("INSERT INTO made_before VALUES (1)")
                await new_login.execute("CREATE TABLE made_after (v int)")
                await old_login.execute("INSERT INTO made_after VALUES (2)")
                assert await old_login.fetchval("SELECT count(*) FROM made_before") == 1
                await old_login.execute("ALTER TABLE made_after ADD COLUMN w int")
                await new_login.execute("ALTER TABLE made_before ADD COLUMN w int")
                # Pools reset sessions (asyncpg: RESET ALL, pgbouncer: DISCARD ALL); the
                # role falls back to the login role's default, which is the owner.
                await old_login.execute("DISCARD ALL")
                assert await old_login.fetchval("SELECT current_user") == db
                owners = await new_login.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
                assert [r["tableowner"] for r in owners] == [db]
            finally:
                await old_login.close()
                await new_login.close()
            await _redis_roundtrip(old_redis["REDIS_URL"], f"{name}:old")
            await _redis_roundtrip(new_redis["REDIS_URL"], f"{name}:new")
        except BaseException:
            await session.close()
            raise

    try:
        async with running_operator(_without_grace(operator_settings)):
            await eventually(lambda: _refused(old["DATABASE_URL"]), message="old database login refused")
            await eventually(lambda: _redis_refused(old_redis["REDIS_URL"]), message="old Redis password refused")
            # The session opened before the rotation is not cut off.
            assert await session.fetchval("SELECT count(*) FROM made_after") == 1
            conn = await asyncpg.connect(new["DATABASE_URL"])
            await conn.close()
            await _redis_roundtrip(new_redis["REDIS_URL"], f"{name}:new")

            async def settled() -> dict[str, Any] | None:
                obj = await cluster.get(namespace, name)
                status = (obj or {}).get("status") or {}
                database, redis_status = status.get("database") or {}, status.get("redis") or {}
                done = "previousUser" not in database and redis_status.get("previousPasswordAccepted") is False
                return status if done else None
            await eventually(settled, message="status without the previous credentials")
            # Secret unchanged by the end of the grace period: pods do not restart twice.
            assert await cluster.secret(namespace, f"{name}-database") == new
            assert await cluster.secret(namespace, f"{name}-redis") == new_redis
    finally:
        await session.close()


async def test_rotating_twice(cluster: Cluster, operator: Context, namespace: str, name: str) -> None:
    db = name.replace("-", "_")
    await cluster.apply(namespace, name)
    await cluster.wait_phase(namespace, name, "Ready")
    first = await cluster.secret(namespace, f"{name}-database")
    assert first is not None
    await cluster.annotate(namespace, name, {ROTATE_ANNOTATION: "1"})
    second = await _changed_secret(cluster, namespace, f"{name}-database", first)
    await cluster.annotate(namespace, name, {ROTATE_ANNOTATION: "2"})
    third = await _changed_secret(cluster, namespace, f"{name}-database", second)
    # Back on the first role, with a new password; the second one is still in grace.
    assert (first["user"], second["user"], third["user"]) == (f"{db}_a", f"{db}_b", f"{db}_a")
    assert await _refused(first["DATABASE_URL"])
    for secret in (second, third):
        conn = await asyncpg.connect(secret["DATABASE_URL"])
        await conn.close()


async def _create_secret(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    await cluster._call("POST", cluster.path(namespace, api="v1/secrets"), body)


async def test_single_role_install_moves_to_two_login_roles(
    cluster: Cluster, operator_settings: OperatorSettings, namespace: str, name: str,
    postgres_server: PostgresServer,
) -> None:
    """What an operator version before the two login roles left behind keeps working."""
    db = name.replace("-", "_")
    password = naming.generate_password()
    comment = naming.quote_literal(naming.owner_comment(namespace, name))
    admin = await asyncpg.connect(postgres_server.dsn("postgres", driver="postgresql"))
    try:
        await admin.execute(f'CREATE ROLE "{db}" LOGIN PASSWORD {naming.quote_literal(password)}')
        await admin.execute(f'COMMENT ON ROLE "{db}" IS {comment}')
        await admin.execute(f'CREATE DATABASE "{db}" OWNER "{db}"')
        await admin.execute(f'COMMENT ON DATABASE "{db}" IS {comment}')
        await admin.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{db}" FROM PUBLIC')
    finally:
        await admin.close()
    legacy_url = f"postgresql://{db}:{password}@127.0.0.1:{postgres_server.port}/{db}"
    legacy = await asyncpg.connect(legacy_url)
    try:
        await legacy.execute("CREATE TABLE legacy (v int)")
    finally:
        await legacy.close()
    await _create_secret(cluster, namespace, f"{name}-database", {
        "DATABASE_URL": legacy_url, "host": "127.0.0.1", "port": str(postgres_server.port), "user": db,
        "password": password, "dbname": db,
    })

    async with running_operator(operator_settings):
        await cluster.apply(namespace, name)
        await cluster.wait_phase(namespace, name, "Ready")
        new = await cluster.secret(namespace, f"{name}-database")
        assert new is not None
        assert new["user"] == f"{db}_a"
        conn = await asyncpg.connect(legacy_url)  # pods not restarted yet still log in
        await conn.execute("INSERT INTO legacy VALUES (1)")
        await conn.close()
        conn = await asyncpg.connect(new["DATABASE_URL"])
        try:
            await conn.execute("INSERT INTO legacy VALUES (2)")
            assert await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'") == db
        finally:
            await conn.close()

    async with running_operator(_without_grace(operator_settings)):
        await eventually(lambda: _refused(legacy_url), message="the single role no longer logs in")
        conn = await asyncpg.connect(new["DATABASE_URL"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM legacy") == 2
        finally:
            await conn.close()
    admin = await asyncpg.connect(postgres_server.dsn("postgres", driver="postgresql"))
    try:
        assert await admin.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", db) is False
        assert await admin.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", db) == db
    finally:
        await admin.close()


async def test_rotation_rolls_the_deployments_and_retires_the_old_role_after_their_rollout(
    cluster: Cluster, operator_settings: OperatorSettings, namespace: str, name: str,
) -> None:
    """Issue 15.1: no grace period at all, yet the old credentials work until the pods rolled."""
    async with running_operator(_without_grace(operator_settings)) as ctx:
        await cluster.apply(namespace, name)
        await cluster.wait_phase(namespace, name, "Ready")
        old = await cluster.secret(namespace, f"{name}-database")
        old_redis = await cluster.secret(namespace, f"{name}-redis")
        assert old is not None
        assert old_redis is not None
        await cluster.create_deployment(namespace, f"{name}-app", f"{name}-database")
        await cluster.create_deployment(namespace, f"{name}-cache", f"{name}-redis")
        await cluster.create_deployment(namespace, f"{name}-other", "someone-elses-secret")

        await cluster.annotate(namespace, name, {ROTATE_ANNOTATION: "r1"})
        new = await _changed_secret(cluster, namespace, f"{name}-database", old)
        new_redis = await _changed_secret(cluster, namespace, f"{name}-redis", old_redis)

        async def restarted(deployment: str, secret: str, data: dict[str, str]) -> bool:
            obj = await cluster.get(namespace, deployment, api="apps/v1/deployments")
            annotations = (obj or {})["spec"]["template"]["metadata"].get("annotations") or {}
            return annotations.get(workloads.annotation(secret)) == workloads.version(data)
        await eventually(lambda: restarted(f"{name}-app", f"{name}-database", new), message="app restarted")
        await eventually(lambda: restarted(f"{name}-cache", f"{name}-redis", new_redis), message="cache restarted")
        other = await cluster.get(namespace, f"{name}-other", api="apps/v1/deployments")
        assert other is not None
        assert not other["spec"]["template"]["metadata"].get("annotations"), "a Deployment not using the Secrets"

        # The rollouts have not finished: the old credentials keep working, tick after tick.
        await _timer_ticks(ctx, 3)
        conn = await asyncpg.connect(old["DATABASE_URL"])
        await conn.close()
        await _redis_roundtrip(old_redis["REDIS_URL"], f"{name}:old")
        condition = await cluster.condition(namespace, name, "DatabaseReady")
        assert condition is not None
        assert f"waiting for the rollout of Deployment {name}-app" in condition["message"]

        await cluster.finish_rollout(namespace, f"{name}-app")
        await eventually(lambda: _refused(old["DATABASE_URL"]), message="old database login refused")
        await _redis_roundtrip(old_redis["REDIS_URL"], f"{name}:still")  # its Deployment has not rolled yet
        await cluster.finish_rollout(namespace, f"{name}-cache")
        await eventually(lambda: _redis_refused(old_redis["REDIS_URL"]), message="old Redis password refused")
        conn = await asyncpg.connect(new["DATABASE_URL"])
        await conn.close()
        await _redis_roundtrip(new_redis["REDIS_URL"], f"{name}:new")
        # Retired and rolled: nothing is restarted again.
        patches = len(cluster.writes("deployments"))
        await _timer_ticks(ctx, 2)
        assert len(cluster.writes("deployments")) == patches
