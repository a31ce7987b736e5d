"""`python -m loadtest bench`: max throughput side by side, in one run, on this machine.

1. bare FastAPI, one route (uvicorn, uvloop + httptools, one worker)
2. Flask, the same handler (gunicorn, sync worker, one worker)
3. the tasks service, ``GET /api/v1/tasks`` direct (auth, Redis cache hit, metrics, logs)
4. the same request through the gateway (JWT check, rate limit, proxy hop)

One worker process each, because that is how every Flotilla service runs (scale is
replicas, not workers). The load generator is wrk at a fixed number of connections
(locust FastHttpUser when wrk cannot be had). Also measured: `flotilla up` from start to
all-ready, and each service's RSS idle and under load.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtest import report
from loadtest.baselines import PAGE_SIZE
from loadtest.procstats import Sampler, rss_mb
from loadtest.results import load_entries, merged_row
from loadtest.stack import runnable_services, running_stack, servers
from services.kit import catalog
from services.launcher import free_port
from services.serve import PortInUse, ensure_port_free

HERE = Path(__file__).parent
WRK_SCRIPT = HERE / "wrk_report.lua"
TASKS_PATH = "/api/v1/tasks"
#: The benchmark measures the proxy path, so the gateway's limiter runs (its cost is part
#: of every request) with limits no single benchmark client can reach.
BENCH_STACK_ENV = {"GATEWAY_RATE_LIMIT_PER_USER": "1000000/second", "GATEWAY_RATE_LIMIT_PER_IP": "1000000/second"}


@dataclass
class Result:
    name: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: int = 0
    note: str = ""


# --- load generators -------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """wrk from Debian; installed when missing and we are root (as on CI machines)."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    for command in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "wrk"]):
        subprocess.run(command, check=False, capture_output=True, timeout=300,  # noqa: S603
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


def run_wrk(wrk: str, name: str, url: str, token: str, *, connections: int, seconds: int) -> Result:
    completed = subprocess.run(  # noqa: S603 - our arguments
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(WRK_SCRIPT), url],
        capture_output=True, text=True, timeout=seconds + 30, env={**os.environ, "FLOTILLA_BENCH_TOKEN": token},
    )
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        return Result(name, note=f"wrk failed: {(completed.stderr or completed.stdout).strip()[:200]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return Result(name, rps=data["requests"] / (data["duration_us"] / 1e6), p50_ms=data["p50_us"] / 1000,
                  p99_ms=data["p99_us"] / 1000, requests=data["requests"], errors=errors)


def run_locust_bench(name: str, url: str, token: str, *, connections: int, seconds: int, out_dir: Path) -> Result:
    base, _, path = url.partition("/api/")
    prefix = out_dir / f"bench-{name.split()[0].strip('()')}"
    subprocess.run(  # noqa: S603 - our arguments
        [sys.executable, "-m", "locust", "-f", str(HERE / "bench_locustfile.py"), "--headless", "--host", base,
         "-u", str(connections), "-r", str(connections), "-t", f"{seconds}s", "--only-summary",
         "--loglevel", "WARNING", "--json-file", str(prefix)],
        capture_output=True, timeout=seconds + 60,
        env={**os.environ, "FLOTILLA_BENCH_TOKEN": token, "FLOTILLA_BENCH_PATH": f"/api/{path}"},
    )
    entries = load_entries(prefix.with_suffix(".json")) if prefix.with_suffix(".json").exists() else []
    if not entries:
        return Result(name, note="locust produced no results")
    row = merged_row(name, entries)
    return Result(name, rps=row.rps, p50_ms=row.p50_ms, p99_ms=row.p99_ms, requests=row.requests, errors=row.failures)


# --- what is measured ------------------------------------------------------------------


@contextmanager
def baseline(kind: str) -> Iterator[tuple[str, int]]:
    """Start a bare baseline app on a free port; yields its URL and pid."""
    port = free_port()
    if kind == "fastapi":
        command = ["-m", "uvicorn", "loadtest.baselines:fastapi_app", "--host", "127.0.0.1", "--port", str(port),
                   "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    else:
        command = ["-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
                   "--log-level", "warning", "loadtest.baselines:flask_app"]
    process = subprocess.Popen([sys.executable, *command], stdout=subprocess.DEVNULL,  # noqa: S603
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}{TASKS_PATH}"
        _wait_http(url, {})
        yield url, process.pid
    finally:
        # gunicorn's arbiter stops its workers on SIGTERM; the session makes sure nothing is left.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def _wait_http(url: str, headers: dict[str, str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(url, headers=headers).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")
            time.sleep(0.1)


def bench_user(entry_url: str, tasks_url: str) -> tuple[str, str]:
    """An account with a full page of tasks and a warm cache; returns (token, X-Cache of a repeat GET)."""
    with httpx.Client(timeout=30.0) as client:
        token = os.environ.get("FLOTILLA_LOADTEST_TOKEN", "")
        if not token:
            credentials = {"email": f"bench-{time.time_ns()}@example.com", "password": f"bench-{time.time_ns()}"}
            client.post(f"{entry_url}/api/v1/auth/register", json=credentials).raise_for_status()
            login = client.post(f"{entry_url}/api/v1/auth/login", json=credentials)
            login.raise_for_status()
            token = str(login.json()["access_token"])
        headers = {"Authorization": f"Bearer {token}"}
        for i in range(PAGE_SIZE):
            client.post(f"{tasks_url}{TASKS_PATH}", headers=headers,
                        json={"title": f"bench task {i}", "priority": "high"}).raise_for_status()
        client.get(f"{tasks_url}{TASKS_PATH}", headers=headers).raise_for_status()
        again = client.get(f"{tasks_url}{TASKS_PATH}", headers=headers)
        again.raise_for_status()
        return token, again.headers.get("x-cache", "?")


def time_flotilla_up(timeout: float = 60.0) -> dict[str, Any]:
    """`flotilla up` on embedded defaults in a fresh data dir: seconds to all-ready, idle RSS.

    Needs the catalog ports (8000-8004) free; when something already listens there the
    measurement is skipped rather than disturbing it.
    """
    services = runnable_services()
    try:
        for service in services:
            ensure_port_free("127.0.0.1", service.local_port)
    except PortInUse as exc:
        return {"ready_seconds": None, "note": f"skipped: {exc}"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    with tempfile.TemporaryDirectory(prefix="flotilla-up-") as data_dir:
        started = time.monotonic()
        process = subprocess.Popen(  # noqa: S603 - our interpreter and args
            [sys.executable, "-m", "services.cli", "up", "--data-dir", data_dir],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            pending = {s.name: f"http://127.0.0.1:{s.local_port}/health/ready" for s in services}
            with httpx.Client(timeout=1.0) as client:
                while pending and time.monotonic() - started < timeout and process.poll() is None:
                    for name, url in list(pending.items()):
                        try:
                            if client.get(url).status_code == 200:
                                del pending[name]
                        except httpx.HTTPError:
                            pass
                    time.sleep(0.02)
            took = time.monotonic() - started
            if pending:
                return {"ready_seconds": None, "note": f"not ready after {took:.0f}s: {', '.join(pending)}"}
            children = {_service_of(p): p for p in _children(process.pid)}
            return {"ready_seconds": round(took, 2),
                    "idle_rss_mb": {name: round(rss_mb(pid), 1) for name, pid in children.items() if name}}
        finally:
            process.send_signal(signal.SIGINT)  # the launcher stops its children in order
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _children(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def _service_of(pid: int) -> str:
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return ""
    return cmdline[cmdline.index("serve") + 1] if "serve" in cmdline else ""


# --- the run ---------------------------------------------------------------------------


def wait_for_quiet_machine(max_load: float, wait_seconds: float) -> list[float]:
    """Poll the 1-minute load average until it drops below ``max_load`` (bounded)."""
    deadline = time.monotonic() + wait_seconds
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        print(f"  waiting for a quiet machine: load {os.getloadavg()[0]:.2f} >= {max_load}", flush=True)
        time.sleep(15)
    return list(os.getloadavg())


def bench(
    *,
    connections: int = 64,
    seconds: int = 10,
    warmup_seconds: int = 3,
    database_url: str = "",
    redis_url: str = "",
    out_dir: Path,
    max_load: float = 1.0,
    wait_seconds: float = 0,
) -> dict[str, Any]:
    load_before = wait_for_quiet_machine(max_load, wait_seconds) if wait_seconds else list(os.getloadavg())
    wrk = ensure_wrk()
    generator = f"wrk -t1 -c{connections} -d{seconds}s" if wrk else f"locust FastHttpUser x{connections}, {seconds}s"
    print(f"load generator: {generator} (after {warmup_seconds}s warm-up each); load average {load_before}",
          flush=True)

    def measure(name: str, url: str, token: str) -> Result:
        if wrk:
            run_wrk(wrk, name, url, token, connections=connections, seconds=warmup_seconds)
            result = run_wrk(wrk, name, url, token, connections=connections, seconds=seconds)
        else:
            run_locust_bench(name, url, token, connections=connections, seconds=warmup_seconds, out_dir=out_dir)
            result = run_locust_bench(name, url, token, connections=connections, seconds=seconds, out_dir=out_dir)
        print(f"  {name:<28} {result.rps or 0:>9,.0f} req/s  P50 {result.p50_ms or 0:6.1f} ms  "
              f"P99 {result.p99_ms or 0:6.1f} ms  errors {result.errors} {result.note}", flush=True)
        return result

    up = time_flotilla_up()
    print(f"flotilla up (embedded defaults) ready in: {up.get('ready_seconds')}s {up.get('note', '')}", flush=True)
    results: list[Result] = []
    with ExitStack() as stack:
        with baseline("fastapi") as (url, _):
            results.append(measure("(1) FastAPI bare", url, ""))
        with baseline("flask") as (url, _):
            results.append(measure("(2) Flask + gunicorn sync", url, ""))
        found = stack.enter_context(servers(database_url, redis_url))
        private, ready_seconds = stack.enter_context(running_stack(
            out_dir / "stack", database_url=found.database_url, redis_url=found.redis_url, extra_env=BENCH_STACK_ENV))
        tasks = private.service(catalog.TASKS.name)
        gateway = private.service(catalog.GATEWAY.name)
        assert tasks is not None, "the tasks service is not installed"
        tasks_url = private.url(tasks)
        token, cache_state = bench_user(private.entry_url, tasks_url)
        with Sampler(private.pids()) as sampler:
            results.append(measure("(3) tasks direct", f"{tasks_url}{TASKS_PATH}", token))
            if gateway is not None:
                results.append(measure("(4) tasks via gateway", f"{private.url(gateway)}{TASKS_PATH}", token))
            else:
                results.append(Result("(4) tasks via gateway", note="n/a: the gateway service is not installed"))
        memory = {u.name: {"idle_rss_mb": round(u.idle_rss_mb, 1), "loaded_rss_mb": round(u.peak_rss_mb, 1),
                           "cpu_peak_percent": round(u.peak_cpu, 1)} for u in sampler.usage.values()}
    ratios = _ratios(results)
    summary = {
        "machine": {**report.machine(), "loadavg_before": load_before}, "generator": generator,
        "results": [asdict(r) for r in results], "ratios": ratios, "tasks_cache_on_repeat_get": cache_state,
        "flotilla_up": up, "bench_stack_ready_seconds": round(ready_seconds, 2), "services": memory,
    }
    report.write_json(out_dir / "bench.json", summary)
    _print(summary, results)
    print(f"\nresults: {out_dir / 'bench.json'}")
    return summary


def _ratios(results: list[Result]) -> dict[str, float | None]:
    rps = {r.name.split()[0]: r.rps for r in results}

    def ratio(a: str, b: str) -> float | None:
        top, bottom = rps.get(a), rps.get(b)
        return round(top / bottom, 3) if top and bottom else None

    return {"(3)/(1)": ratio("(3)", "(1)"), "(4)/(1)": ratio("(4)", "(1)"), "(3)/(2)": ratio("(3)", "(2)")}


def _print(summary: dict[str, Any], results: list[Result]) -> None:
    print()
    print(report.table(("target", "RPS", "P50 ms", "P99 ms", "requests", "errors", "note"),
                       ((r.name, r.rps if r.rps is not None else "n/a", r.p50_ms if r.p50_ms is not None else "n/a",
                         r.p99_ms if r.p99_ms is not None else "n/a", r.requests, r.errors, r.note) for r in results)))
    print()
    print("ratios: " + ", ".join(f"{k} = {v if v is not None else 'n/a'}" for k, v in summary["ratios"].items()))
    up = summary["flotilla_up"]
    print(f"flotilla up -> all ready: {up.get('ready_seconds')}s (embedded defaults, fresh data dir) "
          f"{up.get('note', '')}; bench stack on PostgreSQL/Redis: {summary['bench_stack_ready_seconds']}s")
    idle_up = up.get("idle_rss_mb", {})
    print()
    print(report.table(("service", "RSS MB idle (up)", "RSS MB idle (PG)", "RSS MB loaded (PG)", "CPU % peak"),
                       ((name, idle_up.get(name, "n/a"), m["idle_rss_mb"], m["loaded_rss_mb"], m["cpu_peak_percent"])
                        for name, m in summary["services"].items())))
