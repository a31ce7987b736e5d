"""`python -m loadtest burst`: a login burst through the gateway, open loop, real argon2.

    python -m loadtest burst                          # 200 users at 50 new users/s
    python -m loadtest burst --users 400 --rate 100 --retry

On a private stack (real PostgreSQL/Redis) with auth's **default** password-hashing
parameters forced (whatever the environment exports) and the per-address limits out of
reach (every client is 127.0.0.1): user ``i`` starts at ``i / rate`` seconds, registers
and then logs in. Each answer is classified per endpoint: 2xx, 503 shed (auth refusing
excess hashing work at once: Retry-After and ``X-Flotilla-Shed: overloaded``), other
503s (with or without Retry-After: a pool time-out, an open breaker), 504, other statuses,
transport errors, with the error bodies' ``error_code`` counted; latencies
P50/P95/P99/max. The gateway's breaker for auth is polled during the burst and read
after it, and one normal login right after the burst is timed. ``--retry``: clients
honour Retry-After (capped) and try again, and the report says how many users
eventually got through.

The issue's target: no errors; work beyond capacity queues within a bound and is then
refused fast with 503 + Retry-After; never a 504; no breaker opening.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest import report
from loadtest.bench import BENCH_STACK_ENV, _server_pids
from loadtest.openloop import percentile
from loadtest.procstats import CpuMeter
from loadtest.report import fmt_latency as _fmt
from loadtest.stack import running_stack, servers
from services.kit import catalog

REGISTER, LOGIN = "POST /api/v1/auth/register", "POST /api/v1/auth/login"
ENDPOINTS = {REGISTER: "/api/v1/auth/register", LOGIN: "/api/v1/auth/login"}
SHED_HEADER = "x-flotilla-shed"
SHED_OVERLOADED = "overloaded"
#: auth's hashing settings whose defaults the burst runs with.
HASH_FIELDS = ("password_hash_time_cost", "password_hash_memory_kib", "password_hash_parallelism",
               "password_hash_concurrency", "password_hash_queue")
#: Classes of answers, in table order; everything but the first two is an error. A shed
#: is auth refusing excess hashing work at once (503 + Retry-After + ``X-Flotilla-Shed:
#: overloaded``); any other 503 (a database pool time-out, the gateway's open breaker) is
#: an error even with Retry-After.
OK, SHED, OTHER_503 = "2xx", "503 shed", "503 other + Retry-After"
ERROR_CLASSES = (OTHER_503, "503 no Retry-After", "504", "other status", "transport error")
BREAKER_POLL_SECONDS = 0.5


def auth_default_env() -> dict[str, str]:
    """auth's password-hashing defaults, as environment that overrides anything exported."""
    from services.auth.settings import AuthSettings

    prefix = catalog.env_prefix(catalog.AUTH.name)
    return {f"{prefix}{name.upper()}": str(AuthSettings.model_fields[name].default) for name in HASH_FIELDS}


def _error_code(response: httpx.Response) -> str:
    """``error_code`` of an error body, with the dependency it names (auth's database, the
    gateway's breaker for auth) and the shed mark, e.g. ``dependency_unavailable (database; shed)``."""
    try:
        body = response.json()
        code, details = str(body.get("error_code", "?")), body.get("details") or {}
    except (ValueError, AttributeError):
        return "?"
    notes = [str(details["dependency"])] if isinstance(details, dict) and "dependency" in details else []
    if shed := response.headers.get(SHED_HEADER):
        notes.append(f"shed: {shed}")
    return f"{code} ({'; '.join(notes)})" if notes else code


@dataclass
class EndpointStats:
    classes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Non-2xx answers by "<status> <error_code>" (the error body says who refused and why).
    error_codes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    #: Latencies of the 503 + Retry-After answers alone: how fast excess work is refused.
    shed_latencies_ms: list[float] = field(default_factory=list)

    def add(self, response: httpx.Response | None, elapsed: float) -> str:
        self.latencies_ms.append(1000 * elapsed)
        kind = self.classify(response)
        if response is not None:
            self.statuses[response.status_code] += 1
            if kind != OK:
                self.error_codes[f"{response.status_code} {_error_code(response)}"] += 1
        if kind == SHED:
            self.shed_latencies_ms.append(1000 * elapsed)
        self.classes[kind] += 1
        return kind

    @staticmethod
    def classify(response: httpx.Response | None) -> str:
        if response is None:
            return "transport error"
        if 200 <= response.status_code < 300:
            return OK
        if response.status_code == 503:
            if "retry-after" not in response.headers:
                return "503 no Retry-After"
            return SHED if response.headers.get(SHED_HEADER) == SHED_OVERLOADED else OTHER_503
        return "504" if response.status_code == 504 else "other status"

    def row(self) -> dict[str, Any]:
        values, shed = sorted(self.latencies_ms), sorted(self.shed_latencies_ms)
        return {"requests": sum(self.classes.values()), **{k: self.classes.get(k, 0) for k in (OK, SHED)},
**{k: self.classes.get(k, 0) for k in ERROR_CLASSES},
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "error_codes": dict(self.error_codes),
                "p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
                "p99_ms": percentile(values, 99), "max_ms": values[-1] if values else None,
                "shed_p99_ms": percentile(shed, 99)}


@dataclass
class Burst:
    base_url: str
    users: int
    rate: float
    retry: bool
    max_retries: int = 5
    max_retry_after: float = 10.0
    timeout: float = 30.0
    stats: dict[str, EndpointStats] = field(default_factory=lambda: {e: EndpointStats() for e in ENDPOINTS})
    retries: int = 0
    completed_users: int = 0
    registered: list[dict[str, str]] = field(default_factory=list)

    async def call(self, client: httpx.AsyncClient, endpoint: str, body: dict[str, str],
                   started: float | None = None) -> httpx.Response | None:
        """One request (and, with ``retry``, its retries after 503 + Retry-After)."""
        for attempt in range(self.max_retries + 1):
            begun = time.monotonic() if started is None or attempt else started
            try:
                response: httpx.Response | None = await client.post(f"{self.base_url}{ENDPOINTS[endpoint]}",
                                                                    json=body)
            except httpx.HTTPError:
                response = None
            kind = self.stats[endpoint].add(response, time.monotonic() - begun)
            if not (self.retry and kind in (SHED, OTHER_503) and attempt < self.max_retries and response is not None):
                return response
            self.retries += 1
            wait = min(self.max_retry_after, float(response.headers.get("retry-after", "1") or 1))
            await asyncio.sleep(wait * (0.5 + random.random()))
        return None

    async def user(self, client: httpx.AsyncClient, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        credentials = {"email": f"burst-{secrets.token_hex(8)}@example.com", "password": secrets.token_urlsafe(16)}
        registered = await self.call(client, REGISTER, credentials, started=at)
        if registered is None or registered.status_code != 201:
            return
        self.registered.append(credentials)
        login = await self.call(client, LOGIN, credentials)
        if login is not None and login.status_code == 200:
            self.completed_users += 1

    async def run(self) -> float:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            started = time.monotonic() + 0.05
            await asyncio.gather(*(self.user(client, started + i / self.rate) for i in range(self.users)))
            return time.monotonic() - started


async def _breaker_state(client: httpx.AsyncClient, report_url: str) -> tuple[str, dict[str, Any]]:
    """The gateway's breaker for auth, from its full /health report (on its metrics port)."""
    try:
        report_body = (await client.get(f"{report_url}/health")).json()
    except (httpx.HTTPError, ValueError):
        return "unknown", {}
    auth = report_body.get("checks", {}).get(catalog.AUTH.name, {})
    return str(auth.get("breaker", "unknown")), auth


async def _burst_with_watch(burst: Burst, report_url: str) -> tuple[float, Counter[str]]:
    """Run the burst while polling the gateway's breaker for auth; the states seen."""
    seen: Counter[str] = Counter()
    done = asyncio.Event()

    async def watch() -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            while not done.is_set():
                seen[(await _breaker_state(client, report_url))[0]] += 1
                with suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), BREAKER_POLL_SECONDS)

    watcher = asyncio.create_task(watch())
    try:
        took = await burst.run()
    finally:
        done.set()
        await watcher
    return took, seen


async def _after(burst: Burst, report_url: str) -> dict[str, Any]:
    """One normal login right after the burst, then the breaker's state."""
    async with httpx.AsyncClient(timeout=burst.timeout) as client:
        credentials = burst.registered[0] if burst.registered else None
        if credentials is None:  # nobody got registered: register one now (not timed)
            credentials = {"email": f"burst-after-{secrets.token_hex(6)}@example.com",
                           "password": secrets.token_urlsafe(16)}
            await client.post(f"{burst.base_url}{ENDPOINTS[REGISTER]}", json=credentials)
        begun = time.monotonic()
        try:
            status: int | str = (await client.post(f"{burst.base_url}{ENDPOINTS[LOGIN]}", json=credentials)).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        login_ms = 1000 * (time.monotonic() - begun)
        state, auth_check = await _breaker_state(client, report_url)
    return {"login_status": status, "login_ok": status == 200, "login_ms": round(login_ms, 1),
            "breaker": state, "auth_check": auth_check}


def burst_mode(*, users: int = 200, rate: float = 50, retry: bool = False, max_retries: int = 5,
               database_url: str = "", redis_url: str = "", out_dir: Path) -> dict[str, Any]:
    hash_env = auth_default_env()
    with ExitStack() as stack:
        found = stack.enter_context(servers(database_url, redis_url))
        private, ready_seconds = stack.enter_context(running_stack(
            out_dir / "stack", database_url=found.database_url, redis_url=found.redis_url,
            extra_env={**BENCH_STACK_ENV, **hash_env}))
        gateway = private.service(catalog.GATEWAY.name)
        if gateway is None or private.service(catalog.AUTH.name) is None:
            raise RuntimeError("the burst needs the gateway and auth")
        gateway_url = private.url(gateway)
        print(f"burst: {users} users registering + logging in at {rate:g}/s through the gateway; auth hashing "
              f"{hash_env}{'; clients retry after 503 + Retry-After' if retry else ''}", flush=True)
        burst = Burst(gateway_url, users, rate, retry, max_retries=max_retries)
        meter = CpuMeter({**private.pids(), **_server_pids(found.database_url, found.redis_url)})
        meter.start()
        took, breaker_seen = asyncio.run(_burst_with_watch(burst, private.metrics_url(gateway)))
        meter.stop()
        after = asyncio.run(_after(burst, private.metrics_url(gateway)))
    rows = {name: s.row() for name, s in burst.stats.items()}
    answered = sum(r["requests"] - r["transport error"] for r in rows.values())
    cpu = meter.ms_per_request(answered)
    errors = sum(r[k] for r in rows.values() for k in ERROR_CLASSES)
    summary = {
        "machine": report.machine(), "users": users, "rate_per_second": rate, "retry": retry,
        "auth_hashing": hash_env, "stack_ready_seconds": round(ready_seconds, 2),
        "burst_seconds": round(took, 2), "endpoints": rows,
        "users_completed": burst.completed_users, "retries": burst.retries,
        "breaker_seen_during": dict(breaker_seen), "after": after,
        "cpu_ms_per_request": cpu, "cpu_total_ms": sum(cpu.values()) if cpu else None,
        "target": {"no_errors": errors == 0, "no_504": all(r["504"] == 0 for r in rows.values()),
                   "breaker_never_opened": set(breaker_seen) | {after["breaker"]} <= {"closed"},
                   "login_after_ok": after["login_ok"]},
    }
    report.write_json(out_dir / "burst.json", summary)
    print_summary(summary)
    print(f"\nresults: {out_dir / 'burst.json'}")
    return summary



def print_summary(summary: dict[str, Any]) -> None:
    print()
    headers = ("endpoint", "requests", OK, SHED, *ERROR_CLASSES, "P50 ms", "P95 ms", "P99 ms",
               "max ms", "shed P99 ms")
    print(report.table(headers, [
        (name, r["requests"], r[OK], r[SHED], *(r[k] for k in ERROR_CLASSES),
         _fmt(r["p50_ms"]), _fmt(r["p95_ms"]), _fmt(r["p99_ms"]), _fmt(r["max_ms"]), _fmt(r["shed_p99_ms"]))
        for name, r in summary["endpoints"].items()]))
    for name, r in summary["endpoints"].items():
        print(f"{name}: statuses {r['statuses']}; refusals {r['error_codes'] or '-'}")
    print()
    retry = f" after {summary['retries']} retries (Retry-After honoured)" if summary["retry"] else ""
    print(f"users registered and logged in: {summary['users_completed']} of {summary['users']}{retry}; "
          f"burst took {summary['burst_seconds']}s")
    after = summary["after"]
    print(f"normal login right after the burst: {after['login_status']} in {after['login_ms']} ms; "
          f"gateway breaker for auth: during {summary['breaker_seen_during']}, after: {after['breaker']}")
    cpu = summary["cpu_ms_per_request"]
    names = report.ordered_processes(cpu)
    print()
    print("CPU milliseconds per answered request, per process (over the burst):")
    print(report.table(("burst", *names, "total"),
                       [("register + login", *(report.fmt_ms(cpu[n]) for n in names),
                         report.fmt_ms(summary["cpu_total_ms"]))]))
    print()
    print("target: " + ", ".join(f"{k} {'MET' if v else 'NOT MET'}" for k, v in summary["target"].items()))
