"""`python -m loadtest run`: the reference workload against a stack, and its results table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtest import report
from loadtest.locust_run import StepPlan, run_locust
from loadtest.plot import plot_history
from loadtest.procstats import Sampler, listening_pids
from loadtest.results import HistoryPoint, failures, history, saturation, steps, summarize
from loadtest.stack import runnable_services, running_stack, servers
from services.kit import catalog

RESULTS_ROOT = Path(__file__).parent / "results"

#: Environment for the private stack the runner starts. Every simulated user comes from
#: 127.0.0.1, so per-address limits (the gateway's, and auth's login attempts per
#: address) would measure the limiter, not the stack. They stay switched on, out of
#: reach, so their per-request cost is still paid; the per-user limit is untouched
#: (each user sends ~3 requests/s, far below it).
LOADTEST_STACK_ENV = {"GATEWAY_RATE_LIMIT_PER_IP": "1000000/second", "AUTH_LOGIN_LIMIT_PER_IP": "1000000/minute"}


def results_dir(root: Path = RESULTS_ROOT, label: str = "") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / (f"{stamp}-{label}" if label else stamp)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Target:
    url: str
    pids: dict[str, int]
    ready_seconds: float | None = None


@contextmanager
def target(host: str, out_dir: Path, *, database_url: str = "", redis_url: str = "") -> Iterator[Target]:
    """An existing stack at ``host``, or a private one on real PostgreSQL/Redis."""
    if host:
        local = urlsplit(host).hostname in {"127.0.0.1", "localhost"}
        ports = {s.name: s.local_port for s in catalog.SERVICES}
        yield Target(host.rstrip("/"), listening_pids(ports) if local else {})
        return
    missing = {catalog.GATEWAY.name, catalog.AUTH.name, catalog.TASKS.name} - {s.name for s in runnable_services()}
    if missing:
        raise RuntimeError(f"the workload needs the gateway, auth and tasks; missing: {', '.join(sorted(missing))}")
    with ExitStack() as stack:
        found = stack.enter_context(servers(database_url, redis_url))
        private, took = stack.enter_context(running_stack(
            out_dir / "stack", database_url=found.database_url, redis_url=found.redis_url, extra_env=LOADTEST_STACK_ENV,
        ))
        yield Target(private.entry_url, private.pids(), took)


def _progress(point: HistoryPoint) -> None:
    print(f"  {point.seconds:5.0f}s  users {point.users:4d}  {point.rps:7.1f} req/s  P95 {point.p95_ms:6.0f} ms  "
          f"failures {point.total_failures}", flush=True)


def run(
    *,
    host: str = "",
    users: int = 100,
    spawn_rate: float = 5,
    duration: int = 60,
    step: StepPlan | None = None,
    recommendations: bool = False,
    database_url: str = "",
    redis_url: str = "",
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the workload, print the reference table, save everything; returns the summary."""
    out = out_dir or results_dir(label="step" if step else "run")
    env = {"FLOTILLA_LOADTEST_RECOMMENDATIONS": "1" if recommendations else "0"}
    with target(host, out, database_url=database_url, redis_url=redis_url) as where:
        if where.ready_seconds is not None:
            print(f"stack ready in {where.ready_seconds:.1f}s at {where.url}", flush=True)
        plan = f"step +{step.users} users every {step.seconds}s up to {step.max_users}" if step else \
            f"{users} users, +{spawn_rate}/s, {duration}s"
        print(f"locust: {plan} against {where.url}", flush=True)
        sampler = Sampler(where.pids)
        printed: list[HistoryPoint] = []

        def progress(point: HistoryPoint) -> None:
            # Locust flushes its history every few seconds; print each new second once.
            if not printed or point.seconds > printed[-1].seconds:
                printed.append(point)
                _progress(point)

        with sampler:
            files = run_locust(where.url, out, users=users, spawn_rate=spawn_rate, duration=duration, step=step,
                               env=env, on_start=lambda pid: sampler.add("locust (load generator)", pid),
                               on_progress=progress)
    rows, workload = summarize(files.json)
    points = history(files.history)
    plot = plot_history(points, out / "latency_rps.png", title=f"Flotilla reference workload ({plan})")
    step_list = steps(points) if step else []
    best = saturation(step_list)
    summary: dict[str, Any] = {
        "target": where.url, "plan": plan, "machine": report.machine(), "stack_ready_seconds": where.ready_seconds,
        "workload": workload.as_dict(), "endpoints": [r.as_dict() for r in rows],
        "processes": [{"name": u.name, "pid": u.pid, "cpu_mean_percent": round(u.mean_cpu, 1),
                       "cpu_peak_percent": round(u.peak_cpu, 1), "rss_idle_mb": round(u.idle_rss_mb, 1),
                       "rss_peak_mb": round(u.peak_rss_mb, 1)} for u in sampler.usage.values()],
        "steps": [vars(s) for s in step_list], "saturation": vars(best) if best else None,
        "failures": failures(files.failures),
    }
    report.write_json(out / "summary.json", summary)
    report.write_csv(out / "table.csv", [r.as_dict() for r in [*rows, workload]])
    print()
    print(report.requests_table(rows, workload))
    print()
    print(report.process_table(sampler.usage.values()))
    if step:
        print()
        print(report.steps_table(step_list))
        print("\nsaturation point (max RPS with 0 errors): "
              + (f"{best.users} users, {best.rps:.0f} req/s, P95 {best.p95_ms:.0f} ms, P99 {best.p99_ms:.0f} ms"
                 if best else "none (every step had errors)"))
    for failure in summary["failures"][:10]:
        print(f"failure: {failure.get('Name')}: {failure.get('Error')} x{failure.get('Occurrences')}")
    print(f"\nresults: {out}/ (summary.json, table.csv, report.html, {plot.name}, locust_*.csv)")
    return summary

