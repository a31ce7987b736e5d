"""Zero-downtime shutdown: SIGTERM under steady load fails no client request.

Kubernetes stops sending to a pod once its readiness probe fails; the client side here
does the same (tests/chaos/traffic.py polls /health/ready and routes only to ready
instances). What is under test is the server side: readiness turns 503 first, the
service keeps serving through the drain window, then finishes what is in flight.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.kit import catalog
from tests.chaos.conftest import Scale
from tests.chaos.traffic import Load, Operation, ReadinessBalancer, Tally
from tests.support import tokens
from tests.support.polling import eventually_sync
from tests.support.servers import PostgresServer
from tests.support.stack import ServiceProcess, Stack, bearer, free_port, gateway, register_and_login

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

DRAIN_SECONDS = "1.5"
#: How long a slow request takes to send its body: longer than the drain window, so it
#: is still in flight when uvicorn's graceful shutdown starts.
SLOW_BODY_SECONDS = 2.5


def assert_graceful_exit(exit_code: int, log_path: Path) -> None:
    # uvicorn re-raises the signal once shutdown is complete (exit 143 in a pod): the
    # log, not the code, says whether shutdown was graceful.
    assert exit_code in (0, -signal.SIGTERM), exit_code
    assert "Application shutdown complete." in log_path.read_text()


def _record(tally: Tally, kind: str, response: httpx.Response, expected: int) -> None:
    if response.status_code == expected:
        tally.ok(kind)
    else:
        tally.fail(f"{kind}: {response.status_code} {response.text[:200]}")


def _steady_operation(balancer: ReadinessBalancer, tally: Tally, headers: dict[str, str]) -> Operation:
    def operation(client: httpx.Client, worker: int, n: int) -> None:
        url = balancer.pick()
        if url is None:  # no instance in rotation: a client of a Service would not send either
            time.sleep(0.01)
            return
        try:
            if n % 3 == 0:
                response = client.post(f"{url}/api/v1/tasks", json={"title": f"w{worker}-{n}"}, headers=headers)
                _record(tally, "created", response, 201)
            else:
                response = client.get(f"{url}/api/v1/tasks", params={"limit": 5}, headers=headers)
                _record(tally, "listed", response, 200)
        except httpx.HTTPError as exc:
            tally.fail(f"{url}: {type(exc).__name__}: {exc}")

    return operation


def _slow_post(url: str, headers: dict[str, str], started: threading.Event, tally: Tally) -> None:
    """A POST whose body trickles in over SLOW_BODY_SECONDS (a slow client, a big upload)."""
    payload = f'{{"title": "slow {uuid.uuid4().hex[:8]}", "priority": "low"}}'.encode()
    pieces = [payload[i:i + 8] for i in range(0, len(payload), 8)]

    def body() -> Iterator[bytes]:
        for index, piece in enumerate(pieces):
            yield piece
            if index == 0:
                started.set()
            time.sleep(SLOW_BODY_SECONDS / len(pieces))  # traffic shaping, not synchronisation

    try:
        response = httpx.post(f"{url}/api/v1/tasks", content=body(),
                              headers={**headers, "content-type": "application/json"}, timeout=30)
        _record(tally, "slow-created", response, 201)
    except httpx.HTTPError as exc:
        tally.fail(f"slow: {type(exc).__name__}: {exc}")


def test_service_drain_fails_no_request(chaos_postgres: PostgresServer, tmp_path: Path, scale: Scale) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TASKS_ENVIRONMENT": "test",
        "TASKS_DATABASE_URL": chaos_postgres.create_database("drain_tasks"),
        "TASKS_MIGRATE_ON_START": "true",
        "TASKS_JWT_PUBLIC_JWKS": tokens.test_jwks(),
        "TASKS_DATA_DIR": str(tmp_path),
        # no Redis: events wait in the outbox for a data service that is not there, harmlessly
        "TASKS_DATA_URL": f"http://127.0.0.1:{free_port()}",
        "TASKS_SHUTDOWN_DRAIN_SECONDS": DRAIN_SECONDS,
        "FLOTILLA_GRACEFUL_TIMEOUT": "10",
    }
    tasks = ServiceProcess(catalog.TASKS, port, env, tmp_path / "tasks.log")
    tasks.start()
    try:
        tasks.wait_ready()
        headers = tokens.auth_header(f"drain-{uuid.uuid4().hex[:8]}")
        tally = Tally()
        with ReadinessBalancer([tasks.url]) as balancer:
            balancer.wait_ready(tasks.url)
            with Load(_steady_operation(balancer, tally, headers), workers=scale.workers):
                eventually_sync(lambda: tally.sent >= 50)
                started = [threading.Event() for _ in range(3)]
                slow = [threading.Thread(target=_slow_post, args=(tasks.url, headers, ev, tally)) for ev in started]
                for thread in slow:
                    thread.start()
                for event in started:
                    assert event.wait(10)
                tasks.signal(signal.SIGTERM)
                exit_code = tasks.wait(timeout=30)
                for thread in slow:
                    thread.join(timeout=30)
            history = balancer.history[tasks.url]
    finally:
        tasks.stop()

    print(f"\n[chaos] service drain (tasks): {tally.summary()}; readiness seen: {history}")
    assert_graceful_exit(exit_code, tasks.log_path)
    assert tally.failures == []
    assert tally.outcomes["slow-created"] == 3  # in flight across SIGTERM and the whole drain window
    # readiness said 503 (draining) while the process still answered, before it went away
    assert history[:2] == ["200", "503"], history


def test_gateway_rolling_update_fails_no_request(calm_stack: Stack, tmp_path: Path, scale: Scale) -> None:
    """Two gateway replicas; a third comes up, then the old two get SIGTERM one by one."""
    with gateway(calm_stack) as client:
        headers = bearer(register_and_login(client, f"roll-{uuid.uuid4().hex[:8]}@example.com"))
    env = {**calm_stack.env_for(catalog.GATEWAY), "GATEWAY_SHUTDOWN_DRAIN_SECONDS": DRAIN_SECONDS}

    def replica(name: str) -> ServiceProcess:
        return ServiceProcess(catalog.GATEWAY, free_port(), env, tmp_path / f"gateway-{name}.log")

    old = [replica("a"), replica("b")]
    new = replica("c")
    tally = Tally()
    exit_codes = []
    try:
        for process in old:
            process.start()
        for process in old:
            process.wait_ready()
        with ReadinessBalancer([p.url for p in old]) as balancer:
            for process in old:
                balancer.wait_ready(process.url)
            with Load(_steady_operation(balancer, tally, headers), workers=scale.workers):
                eventually_sync(lambda: tally.sent >= 50)
                new.start()
                new.wait_ready()
                balancer.add(new.url)
                balancer.wait_ready(new.url)
                for process in old:
                    before = tally.sent
                    process.signal(signal.SIGTERM)
                    exit_codes.append(process.wait(timeout=30))
                    eventually_sync(lambda before=before: tally.sent >= before + 20)
            histories = {url: list(states) for url, states in balancer.history.items()}
    finally:
        for process in [*old, new]:
            process.stop()

    print(f"\n[chaos] gateway rolling update: {tally.summary()}; readiness seen: {histories}")
    for process, code in zip(old, exit_codes, strict=True):
        assert_graceful_exit(code, process.log_path)
    assert tally.failures == []
    for process in old:
        assert histories[process.url][:2] == ["200", "503"], histories
