"""`python -m loadtest bench`: max throughput and CPU per request side by side, in one run.

1. bare FastAPI, one route (uvicorn, uvloop + httptools, one worker)
2. Flask, the same handler (gunicorn, sync worker, one worker)
3. the tasks service, ``GET /api/v1/tasks`` direct (auth, Redis cache hit, metrics, logs)
4. the same request through the gateway (JWT check, rate limit, proxy hop)
5. a bare one-hop proxy (plain ASGI, one pooled aiohttp session) in front of (1): the
   gateway's honest baseline
6. bare FastAPI + asyncpg reading the same 20-row page from PostgreSQL: the uncached
   read's honest baseline
7. the tasks service direct with every request missing the cache (reads PostgreSQL)
8. the reference mix through the gateway: many users' tokens, 3 x GET : 1 x POST

One worker process each, because that is how every Flotilla service runs (scale is
replicas, not workers). The load generator is wrk at a fixed number of connections
(locust FastHttpUser for the GET-only targets when wrk cannot be had). For every target,
the CPU time of every process involved is read from /proc over the measured window and
divided by the requests completed: CPU milliseconds per request per process, and as a
multiple of (1)'s, robust on a busy machine where requests per second are not.
Also measured: `flotilla up` from start to all-ready, and each service's RSS.
Everything runs on 127.0.0.1 and is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from loadtest import baselines, report
from loadtest.accounts import TASKS_PATH, bench_user, bench_users
from loadtest.flotilla_up import time_flotilla_up
from loadtest.generators import (
    METHODS_ENV,
    MIX_METHODS,
    NONCE_ENV,
    REPORT_SCRIPT,
    TOKEN_ENV,
    TOKENS_FILE_ENV,
    TOKENS_SCRIPT,
    UNCACHED_SCRIPT,
    Result,
    ensure_wrk,
    run_locust_bench,
    run_wrk,
)
from loadtest.pgstats import PgMeter
from loadtest.procstats import CpuMeter, Sampler, listening_pid
from loadtest.profiling import flame_graphs
from loadtest.stack import PrivateStack, running_stack, servers
from services.kit import catalog
from services.launcher import free_port

#: The benchmark measures the proxy path, so the gateway's limiter runs (its cost is part
#: of every request) with limits no benchmark client can reach; the same for auth's
#: failed-login budget per address (every benchmark user comes from 127.0.0.1).
BENCH_STACK_ENV = {"GATEWAY_RATE_LIMIT_PER_USER": "1000000/second", "GATEWAY_RATE_LIMIT_PER_IP": "1000000/second",
                   "AUTH_LOGIN_LIMIT_PER_IP": "1000000/minute"}
#: The tasks setting that switches its cache off, when the service has one.
CACHE_OFF_FIELD = "cache_enabled"
#: The database of the uncached baseline (6), on the benchmark's PostgreSQL server.
BASELINE_DATABASE = "flotilla_bench"
BASELINE_OWNER = "bench-baseline-owner"
#: Process names in the CPU tables (stack services appear under their catalog names).
FASTAPI, FLASK, PROXY, ASYNCPG_APP = "fastapi", "flask", "proxy", "fastapi+asyncpg"
TASKS_CACHE_OFF, REDIS, POSTGRES = "tasks (cache off)", "redis", "postgres"

#: The services whose flame graphs ``--profile`` records under the reference mix (8).
PROFILED_UNDER_MIX = (catalog.GATEWAY.name, catalog.TASKS.name, catalog.DATA.name)
#: PostgreSQL backends flush their counters to pg_stat_database at most once a second.
PG_STATS_FLUSH_SECONDS = 1.2

UncachedMode = Literal["auto", "setting", "cursor"]
UNCACHED_MODES: tuple[UncachedMode, ...] = ("auto", "setting", "cursor")


# --- the bare servers ------------------------------------------------------------------


@dataclass
class Baseline:
    base_url: str
    pid: int

    @property
    def url(self) -> str:
        return f"{self.base_url}{TASKS_PATH}"


def _baseline_command(kind: str, port: int) -> list[str]:
    if kind == "flask":
        return ["-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", "loadtest.baselines:flask_app"]
    app = {"fastapi": "fastapi_app", "proxy": "proxy_app", "asyncpg": "asyncpg_app"}[kind]
    return ["-m", "uvicorn", f"loadtest.baselines:{app}", "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "on", "--no-access-log",
            "--log-level", "warning"]


@contextmanager
def baseline(kind: str, env: dict[str, str] | None = None) -> Iterator[Baseline]:
    """Start a bare app (fastapi | flask | proxy | asyncpg) on a free port, one worker."""
    port = free_port()
    process = subprocess.Popen([sys.executable, *_baseline_command(kind, port)],  # noqa: S603
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, **(env or {})})
    try:
        started = Baseline(f"http://127.0.0.1:{port}", process.pid)
        _wait_http(started.url, {}, process)
        yield started
    finally:
        # gunicorn's arbiter stops its workers on SIGTERM; the session makes sure nothing is left.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_http(url: str, headers: dict[str, str], process: subprocess.Popen[bytes] | None = None,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(url, headers=headers).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server for {url} exited with code {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")
            time.sleep(0.1)


def _server_pids(database_url: str, redis_url: str) -> dict[str, int]:
    """PostgreSQL's postmaster and redis-server, found by their listening ports (local only)."""
    found: dict[str, int] = {}
    for name, url in ((POSTGRES, database_url), (REDIS, redis_url)):
        parts = urlsplit(url)
        if parts.hostname in {"127.0.0.1", "localhost"} and parts.port:
            pid = listening_pid(parts.port)
            if pid is not None:
                found[name] = pid
    return found


def cache_off_env() -> dict[str, str] | None:
    """Environment that switches the tasks cache off, when the service has such a setting."""
    from services.tasks.settings import TasksSettings

    if CACHE_OFF_FIELD not in TasksSettings.model_fields:
        return None
    return {f"{catalog.env_prefix(catalog.TASKS.name)}{CACHE_OFF_FIELD.upper()}": "false"}


# --- the run ---------------------------------------------------------------------------


def wait_for_quiet_machine(max_load: float, wait_seconds: float) -> list[float]:
    """Poll the 1-minute load average until it drops below ``max_load`` (bounded)."""
    deadline = time.monotonic() + wait_seconds
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        print(f"  waiting for a quiet machine: load {os.getloadavg()[0]:.2f} >= {max_load}", flush=True)
        time.sleep(15)
    return list(os.getloadavg())


@dataclass
class Runner:
    """Runs one target: warm-up, then the measured window with CPU accounting."""

    wrk: str | None
    connections: int
    seconds: int
    warmup_seconds: int
    out_dir: Path
    #: PostgreSQL whose sessions and transactions are counted for targets that involve it.
    pg_dsn: str = ""
    #: Where py-spy flame graphs of the processes a target asks for go (None: none are recorded).
    profile_dir: Path | None = None

    def measure(self, name: str, url: str, processes: dict[str, int], *, token: str = "",
                script: Path = REPORT_SCRIPT, env: dict[str, str] | None = None, note: str = "",
                profile: dict[str, int] | None = None) -> Result:
        if self.wrk is None and script != REPORT_SCRIPT:
            return self._print(Result(name, note=f"n/a: needs wrk ({script.name})"))
        wrk = self.wrk
        base_env = {TOKEN_ENV: token, **(env or {})}

        def run(seconds: int) -> Result:
            if wrk is None:
                return run_locust_bench(name, url, token, connections=self.connections, seconds=seconds,
                                        out_dir=self.out_dir)
            return run_wrk(wrk, name, url, connections=self.connections, seconds=seconds, script=script,
                           env={**base_env, NONCE_ENV: str(secrets.randbits(31))})

        meter = CpuMeter(processes)
        pg = PgMeter(self.pg_dsn) if self.pg_dsn and POSTGRES in processes else None
        if self.warmup_seconds:
            run(self.warmup_seconds)
            if pg:
                time.sleep(PG_STATS_FLUSH_SECONDS)  # the warm-up's counts land before the window
        if pg:
            pg.start()
        meter.start()
        label = "target" + name.split()[0].strip("()")
        with flame_graphs(self.profile_dir if profile else None, label, profile or {}, self.seconds):
            result = run(self.seconds)
        meter.stop()
        result.cpu_ms = meter.ms_per_request(result.requests)
        if pg:
            time.sleep(PG_STATS_FLUSH_SECONDS)  # the window's last counts reach pg_stat_database
        if pg and (counted := pg.stop()) is not None:
            result.pg_sessions, result.pg_xacts = counted.sessions, counted.xacts
        result.note = " ".join(filter(None, (result.note, note)))
        return self._print(result)

    @staticmethod
    def _print(result: Result) -> Result:
        cpu = f"{result.cpu_total_ms:.2f}" if result.cpu_total_ms is not None else "n/a"
        print(f"  {result.name:<34} {result.rps or 0:>8,.0f} req/s  P50 {result.p50_ms or 0:7.1f} ms  "
              f"P99 {result.p99_ms or 0:7.1f} ms  errors {result.errors}  CPU {cpu} ms/req {result.note}",
              flush=True)
        return result


def bench(
    *,
    connections: int = 64,
    seconds: int = 10,
    warmup_seconds: int = 3,
    users: int = 50,
    uncached: UncachedMode = "auto",
    database_url: str = "",
    redis_url: str = "",
    out_dir: Path,
    max_load: float = 1.0,
    wait_seconds: float = 0,
    measure_up: bool = True,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    load_before = wait_for_quiet_machine(max_load, wait_seconds) if wait_seconds else list(os.getloadavg())
    wrk = ensure_wrk()
    generator = f"wrk -t1 -c{connections} -d{seconds}s" if wrk else f"locust FastHttpUser x{connections}, {seconds}s"
    print(f"load generator: {generator} (after {warmup_seconds}s warm-up each); load average {load_before}",
          flush=True)
    runner = Runner(wrk, connections, seconds, warmup_seconds, out_dir, profile_dir=profile_dir)

    up: dict[str, Any] = time_flotilla_up() if measure_up else {"ready_seconds": None, "note": "not measured"}
    print(f"flotilla up (embedded defaults) ready in: {_seconds(up)}", flush=True)
    results: list[Result] = []
    extra: dict[str, Any] = {}
    with ExitStack() as stack:
        with baseline("fastapi") as fastapi:
            results.append(runner.measure("(1) FastAPI bare", fastapi.url, {FASTAPI: fastapi.pid}))
            with baseline("proxy", {baselines.UPSTREAM_ENV: fastapi.base_url}) as proxy:
                results.append(runner.measure("(5) one-hop proxy -> (1)", proxy.url,
                                              {PROXY: proxy.pid, FASTAPI: fastapi.pid}))
        with baseline("flask") as flask:
            results.append(runner.measure("(2) Flask + gunicorn sync", flask.url, {FLASK: flask.pid}))

        found = stack.enter_context(servers(database_url, redis_url))
        server_pids = _server_pids(found.database_url, found.redis_url)
        runner.pg_dsn = baselines.database_dsn(found.database_url, "postgres")
        asyncio.run(baselines.seed(found.database_url, BASELINE_DATABASE, BASELINE_OWNER))
        with baseline("asyncpg", {baselines.DATABASE_ENV: baselines.database_dsn(found.database_url,
                                                                                  BASELINE_DATABASE),
                                  baselines.OWNER_ENV: BASELINE_OWNER}) as app:
            processes = {ASYNCPG_APP: app.pid, **{k: v for k, v in server_pids.items() if k == POSTGRES}}
            results.append(runner.measure("(6) FastAPI + asyncpg, 20 rows", app.url, processes))

        private, ready_seconds = stack.enter_context(running_stack(
            out_dir / "stack", database_url=found.database_url, redis_url=found.redis_url, extra_env=BENCH_STACK_ENV))
        tasks = private.service(catalog.TASKS.name)
        gateway = private.service(catalog.GATEWAY.name)
        if tasks is None:
            raise RuntimeError("the tasks service is not installed")
        tasks_url = private.url(tasks)
        token, cache_state = bench_user(private.entry_url, tasks_url)
        stack_pids = {**private.pids(), **server_pids}
        with Sampler(private.pids()) as sampler:
            results.append(runner.measure("(3) tasks direct (cache hit)", f"{tasks_url}{TASKS_PATH}", stack_pids,
                                          token=token))
            if gateway is not None:
                results.append(runner.measure("(4) tasks via gateway", f"{private.url(gateway)}{TASKS_PATH}",
                                              stack_pids, token=token))
            else:
                results.append(Result("(4) tasks via gateway", note="n/a: the gateway service is not installed"))
            uncached_result, extra["uncached_method"] = _uncached(runner, uncached, private, found.database_url,
                                                                  found.redis_url, stack_pids, token, out_dir)
            results.append(uncached_result)
            if gateway is not None:
                tokens = bench_users(private.entry_url, tasks_url, users)
                results.append(_mix(runner, f"{private.url(gateway)}{TASKS_PATH}", stack_pids, tokens))
            else:
                results.append(Result("(8) reference mix via gateway", note="n/a: the gateway is not installed"))
        memory = {u.name: {"idle_rss_mb": round(u.idle_rss_mb, 1), "loaded_rss_mb": round(u.peak_rss_mb, 1),
                           "cpu_peak_percent": round(u.peak_cpu, 1)} for u in sampler.usage.values()}
    results.sort(key=lambda r: int(r.key.strip("()")))
    summary = {
        "machine": {**report.machine(), "loadavg_before": load_before}, "generator": generator,
        "connections": connections, "seconds": seconds, "warmup_seconds": warmup_seconds, "mix_users": users,
        "results": [{**asdict(r), "cpu_total_ms": r.cpu_total_ms, "pg_xacts_per_request": r.pg_xacts_per_request}
                    for r in results],
        "cpu_x_baseline": report.cpu_multiples(results), "ratios": ratios(results),
        "tasks_cache_on_repeat_get": cache_state, **extra,
        "flotilla_up": up, "bench_stack_ready_seconds": round(ready_seconds, 2), "services": memory,
    }
    report.write_json(out_dir / "bench.json", summary)
    report.write_csv(out_dir / "bench.csv", report.bench_rows(results))
    _print(summary, results)
    print(f"\nresults: {out_dir / 'bench.json'}, {out_dir / 'bench.csv'}")
    return summary


def _uncached(runner: Runner, mode: UncachedMode, private: PrivateStack, database_url: str, redis_url: str,
              stack_pids: dict[str, int], token: str, out_dir: Path) -> tuple[Result, str]:
    """(7): a tasks process with its cache switched off, or (without such a setting)
    the stack's own tasks with a cursor never seen before on every request."""
    off_env = cache_off_env()
    method = ("setting" if off_env else "cursor") if mode == "auto" else mode
    tasks = private.service(catalog.TASKS.name)
    assert tasks is not None
    if method == "cursor":
        result = runner.measure("(7) tasks direct (cache miss)", f"{private.url(tasks)}{TASKS_PATH}", stack_pids,
                                token=token, script=UNCACHED_SCRIPT, note="(a new cursor per request)")
        return result, "cursor: every request a new keyset cursor, so a cache miss (lookup + store in Redis)"
    if off_env is None:
        return (Result("(7) tasks direct (cache off)", note=f"n/a: tasks has no {CACHE_OFF_FIELD} setting"),
                "setting: not available")
    # A second tasks process with the cache off, beside the stack (same database, same
    # keys: its tokens verify against the stack's auth).
    auth, data = private.service(catalog.AUTH.name), private.service(catalog.DATA.name)
    prefix = catalog.env_prefix(catalog.TASKS.name)
    env = {**BENCH_STACK_ENV, **off_env}
    if auth is not None:
        env[f"{prefix}JWKS_URL"] = f"{private.url(auth)}/.well-known/jwks.json"
    if data is not None:
        env[f"{prefix}DATA_URL"] = private.url(data)
    with running_stack(out_dir / "stack-cache-off", database_url=database_url, redis_url=redis_url,
                       extra_env=env, services=[catalog.TASKS]) as (off, _):
        off_tasks = off.service(catalog.TASKS.name)
        assert off_tasks is not None
        url = f"{off.url(off_tasks)}{TASKS_PATH}"
        with httpx.Client(timeout=10.0) as client:
            headers = {"Authorization": f"Bearer {token}"}
            client.get(url, headers=headers).raise_for_status()
            state = client.get(url, headers=headers).headers.get("x-cache", "none")
        pids = {**stack_pids, TASKS_CACHE_OFF: off.pids()[catalog.TASKS.name]}
        result = runner.measure("(7) tasks direct (cache off)", url, pids, token=token,
                                note=f"({'&'.join(f'{k}={v}' for k, v in off_env.items())}; X-Cache {state})")
    return result, f"setting: {off_env}, X-Cache of a repeat GET: {state}"


def _mix(runner: Runner, url: str, stack_pids: dict[str, int], tokens: list[str]) -> Result:
    """(8): the reference mix through the gateway; the tokens reach wrk in a private file."""
    with tempfile.NamedTemporaryFile("w", prefix="flotilla-bench-tokens-", suffix=".txt") as handle:
        handle.write("\n".join(tokens) + "\n")
        handle.flush()
        profiled = {name: pid for name, pid in stack_pids.items() if name in PROFILED_UNDER_MIX}
        return runner.measure("(8) reference mix via gateway", url, stack_pids, script=TOKENS_SCRIPT,
                              env={TOKENS_FILE_ENV: handle.name, METHODS_ENV: MIX_METHODS},
                              note=f"({len(tokens)} users, 3 GET : 1 POST)",
                              profile=profiled)


def ratios(results: list[Result]) -> dict[str, float | None]:
    """The ratios the targets are judged on: throughput and CPU per request, each to its baseline."""
    by_key = {r.key: r for r in results}

    def rps(a: str, b: str) -> float | None:
        top, bottom = by_key.get(a), by_key.get(b)
        return round(top.rps / bottom.rps, 3) if top and bottom and top.rps and bottom.rps else None

    def cpu(a: str, b: str) -> float | None:
        top, bottom = by_key.get(a), by_key.get(b)
        if not top or not bottom or not top.cpu_total_ms or not bottom.cpu_total_ms:
            return None
        return round(top.cpu_total_ms / bottom.cpu_total_ms, 2)

    return {
        "(3)/(1) RPS": rps("(3)", "(1)"), "(4)/(5) RPS": rps("(4)", "(5)"), "(7)/(6) RPS": rps("(7)", "(6)"),
        "(8) CPU/(1) CPU": cpu("(8)", "(1)"),
        "(3)/(1) CPU": cpu("(3)", "(1)"), "(4)/(5) CPU": cpu("(4)", "(5)"), "(7)/(6) CPU": cpu("(7)", "(6)"),
        "(4)/(1) RPS": rps("(4)", "(1)"), "(3)/(2) RPS": rps("(3)", "(2)"),
    }


def _seconds(up: dict[str, Any]) -> str:
    seconds = up.get("ready_seconds")
    return " ".join(filter(None, (f"{seconds}s" if seconds is not None else "", up.get("note", ""))))


def _print(summary: dict[str, Any], results: list[Result]) -> None:
    print()
    print(report.bench_table(results))
    print()
    print("CPU milliseconds per request, per process (from /proc: utime+stime over the measured window / requests; "
          "wrk's own CPU apart):")
    print(report.cpu_table(results))
    print()
    print("the same as a multiple of (1)'s CPU per request:")
    print(report.cpu_table(results, relative=True))
    print()
    ratio_items = summary["ratios"].items()
    print("ratios: " + ", ".join(f"{k} = {v if v is not None else 'n/a'}" for k, v in list(ratio_items)[:4]))
    print("        " + ", ".join(f"{k} = {v if v is not None else 'n/a'}" for k, v in list(ratio_items)[4:]))
    mix = next((r for r in results if r.key == "(8)"), None)
    first = next((r for r in results if r.key == "(1)"), None)
    if mix and first and mix.cpu_total_ms and first.cpu_total_ms:
        print(f"headline: the whole stack spends {mix.cpu_total_ms:.2f} ms of CPU per mixed request, "
              f"{mix.cpu_total_ms / first.cpu_total_ms:.1f}x a bare FastAPI request ({first.cpu_total_ms:.2f} ms)")
    print(f"(7) method: {summary.get('uncached_method')}")
    up = summary["flotilla_up"]
    print(f"flotilla up -> all ready (embedded defaults, fresh data dir): {_seconds(up)}; "
          f"bench stack on PostgreSQL/Redis: {summary['bench_stack_ready_seconds']}s")
    idle_up = up.get("idle_rss_mb", {})
    print()
    print(report.table(("service", "RSS MB idle (up)", "RSS MB idle (PG)", "RSS MB loaded (PG)", "CPU % peak"),
                       ((name, idle_up.get(name, "n/a"), m["idle_rss_mb"], m["loaded_rss_mb"], m["cpu_peak_percent"])
                        for name, m in summary["services"].items())))
