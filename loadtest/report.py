"""Printing and saving results: the reference table, the benchmark's tables, process usage, the machine."""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from loadtest.generators import Result
from loadtest.procstats import ProcessUsage
from loadtest.results import Row, Step


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table, first column left-aligned, the rest right-aligned."""
    cells = [list(headers), *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def requests_table(rows: list[Row], workload: Row) -> str:
    headers = ("endpoint", "requests", "RPS", "P50 ms", "P95 ms", "P99 ms", "errors %")
    return table(headers, ((r.name, r.requests, r.rps, r.p50_ms, r.p95_ms, r.p99_ms, f"{r.error_rate:.2f}")
                           for r in [*rows, workload]))


def process_table(usage: Iterable[ProcessUsage]) -> str:
    headers = ("process", "pid", "CPU % mean", "CPU % peak", "RSS MB idle", "RSS MB peak")
    return table(headers, ((u.name, u.pid, u.mean_cpu, u.peak_cpu, u.idle_rss_mb, u.peak_rss_mb) for u in usage))


def steps_table(step_list: list[Step]) -> str:
    headers = ("users", "RPS", "P95 ms", "P99 ms", "errors")
    return table(headers, ((s.users, s.rps, s.p95_ms, s.p99_ms, s.failures) for s in step_list))


# --- the benchmark ----------------------------------------------------------------------

#: Column order of the CPU tables: baselines, then the request path, then the servers.
PROCESS_ORDER = ("fastapi", "proxy", "flask", "fastapi+asyncpg", "gateway", "auth", "users", "tasks",
                 "tasks (cache off)", "data", "redis", "postgres")
BASELINE_KEY = "(1)"


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _baseline_ms(results: list[Result]) -> float | None:
    first = next((r for r in results if r.key == BASELINE_KEY), None)
    return first.cpu_total_ms if first else None


def cpu_multiples(results: list[Result]) -> dict[str, dict[str, float]]:
    """Each target's CPU per request, per process and in total, as a multiple of (1)'s."""
    base = _baseline_ms(results)
    if not base:
        return {}
    out: dict[str, dict[str, float]] = {}
    for r in results:
        if r.cpu_total_ms is not None:
            out[r.name] = {**{k: round(v / base, 3) for k, v in r.cpu_ms.items()},
                           "total": round(r.cpu_total_ms / base, 3)}
    return out


def bench_table(results: list[Result]) -> str:
    base = _baseline_ms(results)
    headers = ("target", "RPS", "P50 ms", "P99 ms", "requests", "errors", "CPU ms/req", "x (1)", "wrk ms/req",
               "PG sessions", "PG xacts/req", "note")
    return table(headers, (
        (r.name, r.rps if r.rps is not None else "n/a", r.p50_ms if r.p50_ms is not None else "n/a",
         r.p99_ms if r.p99_ms is not None else "n/a", r.requests, r.errors, _ms(r.cpu_total_ms),
         _times(r.cpu_total_ms / base) if base and r.cpu_total_ms is not None else "n/a",
         _ms(r.generator_cpu_ms), "" if r.pg_sessions is None else r.pg_sessions,
         "" if r.pg_xacts_per_request is None else f"{r.pg_xacts_per_request:.2f}", r.note)
        for r in results))


def _processes(results: list[Result]) -> list[str]:
    return ordered_processes({name for r in results for name in r.cpu_ms})


def ordered_processes(names: Iterable[str]) -> list[str]:
    """Process names in the CPU tables' column order (known ones first, the rest sorted)."""
    seen = set(names)
    return [p for p in PROCESS_ORDER if p in seen] + sorted(seen - set(PROCESS_ORDER))


def fmt_ms(value: float | None) -> str:
    """A CPU time in milliseconds, with the precision its size deserves."""
    return _ms(value)


def fmt_latency(value: float | None) -> str:
    """A latency (or rate) for a results table: one decimal, thousands separated."""
    return "n/a" if value is None else f"{value:,.1f}"


def cpu_table(results: list[Result], *, relative: bool = False) -> str:
    """Targets x processes: CPU ms per request (or its multiple of (1)'s total); blank = not involved."""
    names = _processes(results)
    base = _baseline_ms(results)

    def cell(value: float | None) -> str:
        if value is None:
            return ""
        if relative:
            return _times(value / base) if base else "n/a"
        return _ms(value)

    return table(("target", *names, "total"),
                 ((r.key, *(cell(r.cpu_ms.get(n)) for n in names), cell(r.cpu_total_ms)) for r in results))


def bench_rows(results: list[Result]) -> list[dict[str, Any]]:
    """One CSV row per target: the figures, the CPU total and its multiple of (1)'s, each process."""
    base = _baseline_ms(results)
    names = _processes(results)
    return [{"target": r.name, "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "requests": r.requests,
             "errors": r.errors, "cpu_ms_per_request": r.cpu_total_ms,
             "cpu_x_baseline": r.cpu_total_ms / base if base and r.cpu_total_ms is not None else None,
             "generator_cpu_ms_per_request": r.generator_cpu_ms,
             "pg_sessions_opened": r.pg_sessions, "pg_xacts_per_request": r.pg_xacts_per_request,
             **{f"cpu_ms_{n}": r.cpu_ms.get(n) for n in names}, "note": r.note}
            for r in results]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
