"""`python -m loadtest connections`: many concurrent keep-alive connections at an open-loop rate.

    python -m loadtest connections                       # 10,000 connections, 70 % of capacity, 30 s
    python -m loadtest connections --connections 2000 --rate-fraction 0.5 --seconds 10

On a private stack (real PostgreSQL/Redis, the gateway's per-user/per-address limits out
of reach, as in ``bench``): register ``--users`` users, warm their list cache, then

1. measure capacity: wrk, closed loop, ``--capacity-connections`` connections for
   ``--capacity-seconds`` on ``GET /api/v1/tasks`` through the gateway, the users' tokens in turn;
2. open ``--connections`` keep-alive connections to the gateway (``--open-rate`` per
   second, each verified with one request) and keep them open;
3. send ``--rate-fraction`` x capacity requests per second, open loop, spread over every
   connection, for ``--seconds``; latency from the scheduled send time (``openloop``).

Reports connections established/failed, requests sent/ok/errors by kind, P50/P95/P99/max,
CPU ms per request for each stack process (from /proc) and the generator's own CPU apart.
The issue's target: 0 errors and P99 < 1 s. Everything is bounded and on 127.0.0.1.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadtest import report
from loadtest.accounts import TASKS_PATH, bench_users
from loadtest.bench import BENCH_STACK_ENV, _server_pids
from loadtest.generators import TOKENS_FILE_ENV, TOKENS_SCRIPT, ensure_wrk, run_wrk
from loadtest.openloop import Outcome, Plan, raise_nofile, run_open_loop
from loadtest.procstats import CpuMeter
from loadtest.rawhttp import build_request
from loadtest.report import fmt_latency as _fmt
from loadtest.stack import running_stack, servers
from loadtest.tokens import tokens_file
from services.kit import catalog

#: File descriptors kept free for everything but the connections (stack clients, logs, wrk).
FD_MARGIN = 200
P99_TARGET_MS = 1000.0


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def connections_mode(
    *,
    connections: int = 10_000,
    rate_fraction: float = 0.7,
    seconds: float = 30,
    users: int = 20,
    capacity: float = 0,
    capacity_connections: int = 64,
    capacity_seconds: int = 5,
    open_rate: float = 1000,
    timeout: float = 10,
    database_url: str = "",
    redis_url: str = "",
    out_dir: Path,
) -> dict[str, Any]:
    fd_limit = raise_nofile()
    if connections + FD_MARGIN > fd_limit:
        raise RuntimeError(f"{connections} connections need {connections + FD_MARGIN} open files; "
                           f"the hard limit is {fd_limit}")
    wrk = ensure_wrk() if not capacity else None
    if not capacity and wrk is None:
        raise RuntimeError("measuring capacity needs wrk (apt-get install wrk), or pass --capacity")
    with ExitStack() as stack:
        found = stack.enter_context(servers(database_url, redis_url))
        private, ready_seconds = stack.enter_context(running_stack(
            out_dir / "stack", database_url=found.database_url, redis_url=found.redis_url, extra_env=BENCH_STACK_ENV))
        gateway, tasks = private.service(catalog.GATEWAY.name), private.service(catalog.TASKS.name)
        if gateway is None or tasks is None:
            raise RuntimeError("the connections mode needs the gateway and the tasks service")
        url = f"{private.url(gateway)}{TASKS_PATH}"
        tokens = bench_users(private.entry_url, private.url(tasks), users)
        _warm(url, tokens)
        pids = {**private.pids(), **_server_pids(found.database_url, found.redis_url)}
        capacity_result: dict[str, Any] = {"rps": capacity, "method": "given (--capacity)"}
        if not capacity:
            assert wrk is not None
            with tokens_file(tokens) as path:
                env = {TOKENS_FILE_ENV: str(path)}
                run_wrk(wrk, "warm-up", url, connections=capacity_connections, seconds=2, script=TOKENS_SCRIPT,
                        env=env)
                measured = run_wrk(wrk, "capacity", url, connections=capacity_connections, seconds=capacity_seconds,
                                   script=TOKENS_SCRIPT, env=env)
            if not measured.rps or measured.errors:
                raise RuntimeError(f"capacity measurement failed: {measured}")
            capacity = measured.rps
            capacity_result = {"rps": measured.rps, "p50_ms": measured.p50_ms, "p99_ms": measured.p99_ms,
                               "errors": measured.errors,
                               "method": f"wrk -t1 -c{capacity_connections} -d{capacity_seconds}s (closed loop)"}
        rate = rate_fraction * capacity
        print(f"capacity {capacity:,.0f} req/s ({capacity_result['method']}); opening {connections:,} connections "
              f"at up to {open_rate:,.0f}/s, then {rate:,.0f} req/s open loop for {seconds:g}s", flush=True)
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        requests = [build_request("GET", f"{host}:{port}", TASKS_PATH, {"Authorization": f"Bearer {t}"})
                    for t in tokens]
        meter = CpuMeter(pids)
        gateway_fds: dict[str, int | None] = {}

        def window_started() -> None:
            meter.start()
            gateway_fds["start"] = open_fds(pids[catalog.GATEWAY.name])

        def window_ended() -> None:  # every connection is still open here
            meter.stop()
            gateway_fds["end"] = open_fds(pids[catalog.GATEWAY.name])

        outcome = run_open_loop(
            Plan(host, port, requests, connections=connections, rate=rate, seconds=seconds, open_rate=open_rate,
                 timeout=timeout),
            on_window_start=window_started, on_window_end=window_ended)
    summary = _summary(outcome, meter, capacity_result, rate_fraction, rate, gateway_fds, fd_limit, users,
                       ready_seconds)
    report.write_json(out_dir / "connections.json", summary)
    print_summary(summary)
    print(f"\nresults: {out_dir / 'connections.json'}")
    return summary


def _warm(url: str, tokens: list[str]) -> None:
    """One read per user, so the window's reads are cache hits."""
    with httpx.Client(timeout=30.0) as client:
        for token in tokens:
            client.get(url, headers={"Authorization": f"Bearer {token}"}).raise_for_status()


def _summary(outcome: Outcome, meter: CpuMeter, capacity: dict[str, Any], fraction: float, rate: float,
             gateway_fds: dict[str, int | None], fd_limit: int, users: int, ready_seconds: float) -> dict[str, Any]:
    latency = outcome.latency()
    cpu = meter.ms_per_request(outcome.answered)
    generator_ms = 1000 * outcome.generator_cpu_seconds / outcome.sent if outcome.sent else None
    p99 = latency["p99_ms"]
    return {
        "machine": report.machine(), "users": users, "stack_ready_seconds": round(ready_seconds, 2),
        "generator_fd_limit": fd_limit,
        "capacity": capacity, "rate_fraction": fraction, "target_rate": round(rate, 1),
        "connections": {"target": outcome.connections, "established": outcome.established,
                        "failed": sum(outcome.failed.values()), "failed_by_kind": dict(outcome.failed),
                        "establish_seconds": round(outcome.establish_seconds, 2),
                        "gateway_open_fds": gateway_fds},
        "requests": {"scheduled": outcome.scheduled, "sent": outcome.sent, "ok": outcome.ok,
                     "errors": outcome.error_count, "errors_by_kind": dict(outcome.errors),
                     "reconnects": outcome.reconnects, "x_cache": dict(outcome.x_cache),
                     "window_seconds": round(outcome.window_seconds, 2),
                     "achieved_rps": round(outcome.sent / outcome.window_seconds, 1)
                     if outcome.window_seconds else None},
        "latency": latency,
        "cpu_ms_per_request": cpu, "cpu_total_ms": sum(cpu.values()) if cpu else None,
        "generator_cpu_ms_per_request": generator_ms,
        "target": {"zero_errors": outcome.error_count == 0 and not outcome.failed,
                   "p99_below_1s": p99 is not None and p99 < P99_TARGET_MS},
    }



def print_summary(summary: dict[str, Any]) -> None:
    conns, reqs, lat = summary["connections"], summary["requests"], summary["latency"]
    print()
    failed = ", ".join(f"{k}: {v}" for k, v in conns["failed_by_kind"].items()) or "-"
    fds = conns["gateway_open_fds"]
    print(report.table(
        ("connections", "target", "established", "failed", "failed by kind", "open s", "gateway fds (start/end)"),
        [("keep-alive to the gateway", conns["target"], conns["established"], conns["failed"], failed,
          conns["establish_seconds"], f"{fds.get('start')}/{fds.get('end')}")]))
    print()
    kinds = ("connect error", "write error", "read error", "timeout")
    statuses = sorted(k for k in reqs["errors_by_kind"] if k.startswith("status ")) or ["non-2xx"]
    print(report.table(
        ("requests", "capacity rps", "rate rps", "achieved rps", "scheduled", "sent", "ok", *kinds,
         *statuses, "reconnects"),
        [("GET /api/v1/tasks (open loop)", summary["capacity"]["rps"], summary["target_rate"],
          reqs["achieved_rps"], reqs["scheduled"], reqs["sent"], reqs["ok"],
          *(reqs["errors_by_kind"].get(k, 0) for k in kinds),
          *(reqs["errors_by_kind"].get(s, 0) for s in statuses), reqs["reconnects"])]))
    print()
    print(report.table(
        ("latency from scheduled send", "P50 ms", "P95 ms", "P99 ms", "max ms", "send lag P99 ms", "send lag max ms"),
        [("all requests", _fmt(lat["p50_ms"]), _fmt(lat["p95_ms"]), _fmt(lat["p99_ms"]), _fmt(lat["max_ms"]),
          _fmt(lat["send_lag_p99_ms"]), _fmt(lat["send_lag_max_ms"]))]))
    print()
    cpu = summary["cpu_ms_per_request"]
    names = report.ordered_processes(cpu)
    generator = summary["generator_cpu_ms_per_request"]
    print("CPU milliseconds per answered request, per process (from /proc over the window; generator apart):")
    print(report.table(
        ("window", *names, "total", "generator"),
        [("open loop", *(report.fmt_ms(cpu[n]) for n in names), report.fmt_ms(summary["cpu_total_ms"]),
          report.fmt_ms(generator))]))
    print()
    target = summary["target"]
    print(f"target (0 errors, P99 < 1 s): errors {'MET' if target['zero_errors'] else 'NOT MET'}, "
          f"P99 {'MET' if target['p99_below_1s'] else 'NOT MET'}; X-Cache {reqs['x_cache']}")
