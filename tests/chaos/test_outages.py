"""Dependencies taken away under load, for real: PostgreSQL stopped, Redis stopped, the
data service killed mid-batch. Nothing restarts the services; they must recover alone.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from services.gateway.settings import GatewaySettings
from services.kit import catalog
from services.kit.events import DATA_GROUP, TASK_EVENTS_STREAM
from services.launcher import per_service_database_url
from tests.chaos.conftest import DurableRedisServer, Scale, log_dir
from tests.chaos.traffic import Load, Tally, is_clean_unavailable, is_error_shape
from tests.support.polling import eventually_sync
from tests.support.servers import PostgresServer
from tests.support.stack import ServiceProcess, Stack, bearer, free_port, gateway, register_and_login

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.redis]

_gateway_defaults = GatewaySettings()
#: The longest a request may take through the gateway when an upstream hangs: every
#: attempt of an idempotent request times out, plus back-off. Anything slower is a hang.
CLIENT_TIMEOUT = (_gateway_defaults.retry_attempts + 1) * (
    _gateway_defaults.upstream_timeout_seconds + _gateway_defaults.retry_backoff_max_seconds) + 2


def _users(stack: Stack, count: int, tag: str) -> list[dict[str, str]]:
    with gateway(stack) as client:
        return [bearer(register_and_login(client, f"{tag}-{i}-{uuid.uuid4().hex[:8]}@example.com"))
                for i in range(count)]


def _all_task_ids(client: httpx.Client, headers: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    for _ in range(1000):  # pages; bounded
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/tasks", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        ids.update(task["id"] for task in body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            return ids
    raise AssertionError("more than 1000 pages of tasks")


def _stats(client: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/api/v1/stats/me", headers=headers)
    return response.json() if response.status_code == 200 else {}


class Writes:
    """Task ids acknowledged with 201, per user."""

    def __init__(self) -> None:
        self.acknowledged: dict[int, list[str]] = defaultdict(list)
        self.lock = threading.Lock()

    def add(self, user: int, task_id: str) -> None:
        with self.lock:
            self.acknowledged[user].append(task_id)

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.acknowledged.values())


def _mixed_operation(users: list[dict[str, str]], tally: Tally, writes: Writes, *, allow_unavailable: bool):
    """POST a task, then list, then read one back: through the gateway, round the users."""

    def operation(client: httpx.Client, worker: int, n: int) -> None:
        user = (worker + n) % len(users)
        headers = users[user]
        try:
            if n % 2 == 0:
                response = client.post("/api/v1/tasks", json={"title": f"chaos w{worker} n{n}"}, headers=headers)
                if response.status_code == 201:
                    writes.add(user, response.json()["id"])
                    tally.ok("write-201")
                    return
                kind = "write"
            else:
                response = client.get("/api/v1/tasks", params={"limit": 10}, headers=headers)
                if response.status_code == 200:
                    tally.ok("read-200")
                    return
                kind = "read"
        except httpx.TimeoutException as exc:
            tally.fail(f"hang past {CLIENT_TIMEOUT}s: {type(exc).__name__}")
            return
        except httpx.HTTPError as exc:
            tally.fail(f"{type(exc).__name__}: {exc}")
            return
        if allow_unavailable and is_clean_unavailable(response):
            tally.ok(f"{kind}-503")
        else:
            tally.fail(f"{kind}: {response.status_code} {response.headers.get('retry-after')} {response.text[:300]}")

    return operation


def test_postgres_outage_under_load(calm_stack: Stack, chaos_postgres: PostgresServer, scale: Scale) -> None:
    users = _users(calm_stack, 4, "pg")
    pids = calm_stack.pids()
    tally, writes = Tally(), Writes()
    operation = _mixed_operation(users, tally, writes, allow_unavailable=True)
    with gateway(calm_stack) as probe:
        with Load(operation, workers=scale.workers, base_url=calm_stack.url(catalog.GATEWAY),
                  timeout=CLIENT_TIMEOUT):
            eventually_sync(lambda: tally.outcomes["write-201"] >= 20)
            chaos_postgres.stop()
            try:
                outage_started = time.monotonic()
                eventually_sync(lambda: tally.outcomes["write-503"] + tally.outcomes["read-503"] >= 5)
                # keep the load on through the outage (traffic shaping, not synchronisation)
                time.sleep(max(0.0, scale.outage_seconds - (time.monotonic() - outage_started)))
            finally:
                chaos_postgres.start()
            writes_before_recovery = writes.count
            # recovered: new writes are acknowledged again, by the same processes
            eventually_sync(lambda: writes.count >= writes_before_recovery + 20, within=60, interval=0.2)
        assert calm_stack.pids() == pids, "a service restarted (or died) during the outage"

        found = 0
        for index, headers in enumerate(users):
            stored = _all_task_ids(probe, headers)
            missing = set(writes.acknowledged[index]) - stored
            assert not missing, f"acknowledged writes lost: {sorted(missing)[:5]}"
            found += len(set(writes.acknowledged[index]) & stored)
            # every stored task (acknowledged or not) produced exactly one "created" event
            eventually_sync(lambda headers=headers, stored=stored: _stats(probe, headers).get("created") == len(stored),
                            within=60, interval=0.3)

    print(f"\n[chaos] PostgreSQL outage: {tally.summary()}; writes acknowledged={writes.count} found={found}")
    assert tally.failures == [], tally.failures[:10]
    assert found == writes.count


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def _strict_gateway(stack: Stack, tmp_path: Path, limit: str) -> ServiceProcess:
    """A second gateway replica on the same Redis, with a per-user limit a test can reach."""
    env = {**stack.env_for(catalog.GATEWAY), "GATEWAY_RATE_LIMIT_PER_USER": limit}
    return ServiceProcess(catalog.GATEWAY, free_port(), env, tmp_path / "strict-gateway.log")


def _burst(url: str, headers: dict[str, str], count: int) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [client.get("/api/v1/users/me", headers=headers) for _ in range(count)]


def test_redis_outage_under_load(calm_stack: Stack, chaos_redis: DurableRedisServer, scale: Scale,
                                 tmp_path: Path) -> None:
    users = _users(calm_stack, 3, "redis")
    limit = 20
    strict = _strict_gateway(calm_stack, tmp_path, f"{limit}/minute")
    strict.start()
    tally, writes = Tally(), Writes()
    # Reads must never fail; writes do not need Redis either.
    operation = _mixed_operation(users, tally, writes, allow_unavailable=False)
    try:
        strict.wait_ready()
        with httpx.Client(timeout=10) as direct, Load(operation, workers=scale.workers,
                                                      base_url=calm_stack.url(catalog.GATEWAY),
                                                      timeout=CLIENT_TIMEOUT):
            eventually_sync(lambda: tally.outcomes["write-201"] >= 20)
            limited_user = _users(calm_stack, 1, "limited")[0]
            chaos_redis.stop()
            reads_at_stop = tally.outcomes["read-200"]
            try:
                outage_started = time.monotonic()
                # Rate limiting degrades to per-process counting: still enforced, never an error.
                burst = _burst(strict.url, limited_user, limit + 10)
                time.sleep(max(0.0, scale.outage_seconds - (time.monotonic() - outage_started)))
                # Events wait in the outbox: /health refreshes the backlog gauge.
                direct.get(f"{calm_stack.metrics_url(catalog.TASKS)}/health")
                backlog = _gauge(direct.get(f"{calm_stack.metrics_url(catalog.TASKS)}/metrics").text,
                                 "flotilla_outbox_backlog")
                reads_during_outage = tally.outcomes["read-200"] - reads_at_stop
            finally:
                chaos_redis.start()
            eventually_sync(lambda: tally.outcomes["read-200"] >= reads_at_stop + reads_during_outage + 20)
    finally:
        strict.stop()

    assert tally.failures == [], tally.failures[:10]
    statuses = [r.status_code for r in burst]
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) >= limit  # never stricter than configured
    refused = next(r for r in burst if r.status_code == 429)
    assert is_error_shape(refused)
    assert refused.json()["error_code"] == "rate_limited"
    assert "retry-after" in refused.headers
    assert "ratelimit_redis_unavailable" in strict.log_path.read_text()
    assert backlog > 0
    assert reads_during_outage > 0

    delivered = 0
    with gateway(calm_stack) as client:
        for index, headers in enumerate(users):
            stored = _all_task_ids(client, headers)
            assert set(writes.acknowledged[index]) <= stored
            stats = eventually_sync(lambda headers=headers, stored=stored: (s := _stats(client, headers))
                                    and s["created"] == len(stored) and s, within=60, interval=0.3)
            delivered += stats["created"]
    print(f"\n[chaos] Redis outage: {tally.summary()}; outbox backlog during outage={backlog:.0f}; "
          f"reads during outage={reads_during_outage}; "
          f"events sent={writes.count} delivered={delivered}; rate-limit burst during outage: "
          f"{statuses.count(200)} allowed, {statuses.count(429)} refused (limit {limit}/minute)")
    assert delivered == writes.count


class HeldTableLock:
    """ACCESS EXCLUSIVE lock on a table, held from a thread of its own until released.

    The data service's consumer then reads entries from the stream but cannot commit
    them: they stay pending, which is the state a crash must not lose.
    """

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn = dsn
        self.table = table
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)
        self.error: BaseException | None = None

    async def _hold(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                async with conn.transaction():
                    # Our own constant table name; quoted anyway.
                    await conn.execute(f'LOCK TABLE "{self.table}" IN ACCESS EXCLUSIVE MODE')
                    self.locked.set()
                    await asyncio.to_thread(self.release.wait, 120)
            finally:
                await conn.close()
        except BaseException as exc:
            self.error = exc
            self.locked.set()

    def __enter__(self) -> HeldTableLock:
        self.thread.start()
        assert self.locked.wait(30)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(timeout=30)


def _consumed(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.metrics_url(catalog.DATA)}/metrics", timeout=5).text
    out = {}
    for result in ("applied", "duplicate", "invalid"):
        prefix = f'flotilla_events_consumed_total{{result="{result}"}} '
        out[result] = next((float(line.removeprefix(prefix)) for line in text.splitlines()
                            if line.startswith(prefix)), 0.0)
    return out


def test_data_service_sigkill_mid_consumption(calm_stack: Stack, chaos_postgres: PostgresServer,
                                              chaos_redis: DurableRedisServer) -> None:
    headers = _users(calm_stack, 1, "crash")[0]
    events = 30
    stream = redis.Redis.from_url(chaos_redis.url, decode_responses=True)
    data_db = per_service_database_url(chaos_postgres.dsn("postgres", driver="postgresql"), "data")
    try:
        with gateway(calm_stack) as client:
            user_id = client.get("/api/v1/users/me", headers=headers).json()["id"]
            last_id = stream.xinfo_stream(TASK_EVENTS_STREAM)["last-generated-id"]
            with HeldTableLock(data_db, "task_snapshots"):
                for i in range(events):
                    created = client.post("/api/v1/tasks", json={"title": f"crash {i}"}, headers=headers)
                    assert created.status_code == 201

                def ours() -> int:
                    entries = stream.xrange(TASK_EVENTS_STREAM, min=f"({last_id}", max="+")
                    return sum(1 for _, fields in entries if f'"owner_id":"{user_id}"' in fields["payload"])

                eventually_sync(lambda: ours() == events)
                # read by the consumer, not acknowledged: the batch is stuck on the lock
                pending = eventually_sync(lambda: stream.xpending(TASK_EVENTS_STREAM, DATA_GROUP)["pending"])
                calm_stack.stop_one(catalog.DATA, sig=signal.SIGKILL)
            # lock released; a new process (another consumer name) takes over
            log_path = log_dir(calm_stack) / "data.log"
            log_offset = log_path.stat().st_size
            calm_stack.start_one(catalog.DATA)
            calm_stack.wait_ready(services=[catalog.DATA])
            stats = eventually_sync(lambda: (s := _stats(client, headers)) and s["created"] == events and s,
                                    within=60, interval=0.3)
            eventually_sync(lambda: stream.xpending(TASK_EVENTS_STREAM, DATA_GROUP)["pending"] == 0)
            consumed = _consumed(calm_stack)
            log = log_path.read_bytes()[log_offset:].decode(errors="replace")
    finally:
        stream.close()

    print(f"\n[chaos] data SIGKILL: events sent={events} pending at kill={pending} "
          f"delivered(created)={stats['created']} after restart: {consumed}")
    # no loss, no double count
    assert stats["created"] == events
    assert stats["open"] == events
    assert pending > 0
    assert "pending_events_reclaimed" in log
