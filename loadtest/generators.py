"""Load generators of `python -m loadtest bench`: wrk with a Lua script (locust as a fallback).

wrk is a closed loop at a fixed number of connections: it measures throughput and
latency at saturation at very little CPU of its own. Its own CPU time is measured
exactly (``wait4``'s resource usage) so a reader can see the generator was not the
bottleneck. The scripts live next to this module:

- ``wrk_report.lua``: a bearer token from the environment, and the one JSON line every
  script prints at the end (the others load it);
- ``wrk_uncached.lua``: ``GET /api/v1/tasks`` with a fresh keyset cursor on each request;
- ``wrk_tokens.lua``: many users' tokens in turn, each sending a sequence of methods
  (``GET,GET,GET,POST``: the reference mix, 3 GET : 1 POST).
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
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.results import load_entries, merged_row

HERE = Path(__file__).parent
REPORT_SCRIPT = HERE / "wrk_report.lua"
UNCACHED_SCRIPT = HERE / "wrk_uncached.lua"
TOKENS_SCRIPT = HERE / "wrk_tokens.lua"
METHODS_ENV = "FLOTILLA_BENCH_METHOD"
#: What each user sends, in turn, in the reference mix.
MIX_METHODS = "GET,GET,GET,POST"
TOKEN_ENV = "FLOTILLA_BENCH_TOKEN"  # noqa: S105 - a variable name, not a secret
TOKENS_FILE_ENV = "FLOTILLA_BENCH_TOKENS_FILE"
NONCE_ENV = "FLOTILLA_BENCH_NONCE"


@dataclass
class Result:
    """One target's figures. CPU figures are filled in by the benchmark, per process tree."""

    name: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: int = 0
    note: str = ""
    #: CPU milliseconds per completed request, per process (the load generator apart).
    cpu_ms: dict[str, float] = field(default_factory=dict)
    #: The load generator's own CPU milliseconds per request (not part of ``cpu_total_ms``).
    generator_cpu_ms: float | None = None
    #: PostgreSQL sessions opened and transactions run in the window (targets that use it).
    pg_sessions: int | None = None
    pg_xacts: int | None = None

    @property
    def key(self) -> str:
        """"(1)", "(2)", ...: how ratios name targets."""
        return self.name.split()[0]

    @property
    def cpu_total_ms(self) -> float | None:
        return sum(self.cpu_ms.values()) if self.cpu_ms else None

    @property
    def pg_xacts_per_request(self) -> float | None:
        return self.pg_xacts / self.requests if self.pg_xacts is not None and self.requests else None


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


def run_wrk(wrk: str, name: str, url: str, *, connections: int, seconds: int, script: Path = REPORT_SCRIPT,
            env: dict[str, str] | None = None) -> Result:
    """One wrk run (one thread, ``connections`` connections, ``seconds`` long, bounded)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(  # noqa: S603 - our arguments
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
            stdout=out, stderr=err, env={**os.environ, **(env or {})})
        cpu_seconds = _wait_with_cpu(process, timeout=seconds + 30)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        return Result(name, note=f"wrk failed: {(stderr or stdout).strip()[:200]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    requests = int(data["requests"])
    return Result(name, rps=requests / (data["duration_us"] / 1e6), p50_ms=data["p50_us"] / 1000,
                  p99_ms=data["p99_us"] / 1000, requests=requests, errors=errors,
                  generator_cpu_ms=1000 * cpu_seconds / requests if requests and cpu_seconds is not None else None)


def _wait_with_cpu(process: subprocess.Popen[bytes], *, timeout: float) -> float | None:
    """Reap ``process`` with wait4 (bounded: killed after ``timeout``); its CPU seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return None
        time.sleep(0.05)


def run_locust_bench(name: str, url: str, token: str, *, connections: int, seconds: int, out_dir: Path) -> Result:
    """Fallback without wrk: locust FastHttpUser, GET only (no scripts)."""
    base, _, path = url.partition("/api/")
    prefix = out_dir / f"bench-{name.split()[0].strip('()')}"
    subprocess.run(  # noqa: S603 - our arguments
        [sys.executable, "-m", "locust", "-f", str(HERE / "bench_locustfile.py"), "--headless", "--host", base,
         "-u", str(connections), "-r", str(connections), "-t", f"{seconds}s", "--only-summary",
         "--loglevel", "WARNING", "--json-file", str(prefix)],
        capture_output=True, timeout=seconds + 60,
        env={**os.environ, TOKEN_ENV: token, "FLOTILLA_BENCH_PATH": f"/api/{path}"},
    )
    entries = load_entries(prefix.with_suffix(".json")) if prefix.with_suffix(".json").exists() else []
    if not entries:
        return Result(name, note="locust produced no results")
    row = merged_row(name, entries)
    return Result(name, rps=row.rps, p50_ms=row.p50_ms, p99_ms=row.p99_ms, requests=row.requests, errors=row.failures)
