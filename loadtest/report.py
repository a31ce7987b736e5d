"""Printing and saving results: the reference table, process usage, the machine."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

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


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
