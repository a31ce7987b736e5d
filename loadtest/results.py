"""Turn locust's output files into the reference table: RPS, P50/P95/P99, error rate.

Read from locust's JSON dump (``--json-file``) rather than its summary CSV because the
JSON keeps each endpoint's full response-time histogram, so the workload rows can be
merged exactly. The locust package is deliberately not imported here: importing it
monkey-patches the whole process for gevent.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.names import WORKLOAD_NAMES

PERCENTILES = (50, 95, 99)


def percentile(histogram: Counter[int], percent: float) -> float:
    """The smallest response time (ms) that ``percent`` % of requests did not exceed."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    threshold = total * percent / 100
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= threshold:
            return float(value)
    return float(max(histogram))


@dataclass
class Row:
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return 100.0 * self.failures / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate_percent": round(self.error_rate, 3)}


@dataclass
class Entry:
    name: str
    requests: int
    failures: int
    started: float
    last: float
    histogram: Counter[int]


def load_entries(path: Path) -> list[Entry]:
    out = []
    for raw in json.loads(path.read_text()):
        out.append(Entry(
            name=raw["name"], requests=int(raw["num_requests"]), failures=int(raw["num_failures"]),
            started=float(raw["start_time"]), last=float(raw["last_request_timestamp"] or raw["start_time"]),
            histogram=Counter({int(k): int(v) for k, v in raw["response_times"].items()}),
        ))
    return out


def merged_row(name: str, entries: list[Entry]) -> Row:
    histogram: Counter[int] = Counter()
    for entry in entries:
        histogram.update(entry.histogram)
    requests = sum(e.requests for e in entries)
    span = max((e.last for e in entries), default=0.0) - min((e.started for e in entries), default=0.0)
    p50, p95, p99 = (percentile(histogram, p) for p in PERCENTILES)
    return Row(name=name, requests=requests, failures=sum(e.failures for e in entries),
               rps=requests / span if span > 0 else 0.0, p50_ms=p50, p95_ms=p95, p99_ms=p99)


def summarize(json_path: Path) -> tuple[list[Row], Row]:
    """One row per endpoint, and the workload row the targets are judged on.

    The workload row merges the steady-state endpoints (list/create tasks,
    recommendations); the one-off register/login calls have their own rows.
    """
    entries = load_entries(json_path)
    rows = [merged_row(e.name, [e]) for e in sorted(entries, key=lambda e: e.name)]
    workload = merged_row("workload (tasks)", [e for e in entries if e.name in WORKLOAD_NAMES])
    return rows, workload


def failures(path: Path) -> list[dict[str, str]]:
    """Locust's failure report (``<prefix>_failures.csv``): what failed and how often."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class HistoryPoint:
    """One second of the run: users, current RPS and current latency percentiles (all endpoints)."""

    seconds: float
    users: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_requests: int
    total_failures: int


def history(path: Path) -> list[HistoryPoint]:
    """The "Aggregated" rows of ``<prefix>_stats_history.csv`` (needs ``--csv-full-history``
    so the percentiles are the current 10-second window, not cumulative)."""
    if not path.exists():
        return []
    points: list[HistoryPoint] = []
    start: float | None = None
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            if raw.get("Name") != "Aggregated":
                continue
            stamp = float(raw["Timestamp"])
            start = stamp if start is None else start
            points.append(HistoryPoint(
                seconds=stamp - start, users=int(raw["User Count"]), rps=_number(raw["Requests/s"]),
                p50_ms=_number(raw["50%"]), p95_ms=_number(raw["95%"]), p99_ms=_number(raw["99%"]),
                total_requests=int(raw["Total Request Count"]), total_failures=int(raw["Total Failure Count"]),
            ))
    return points


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # locust writes "N/A" before the first response
        return 0.0


@dataclass
class Step:
    users: int
    rps: float
    p95_ms: float
    p99_ms: float
    failures: int


def steps(points: list[HistoryPoint], *, min_seconds: int = 5) -> list[Step]:
    """Per user-count plateau of a step run: the figures at its end (the 10 s window there
    holds only steady-state traffic, the logins having happened when the step began).

    Plateaus shorter than ``min_seconds`` are the ramp between steps; their failures
    count towards the step they ramp up to.
    """
    out: list[Step] = []
    plateau: list[HistoryPoint] = []
    failures_before = 0
    for point in [*points, None]:
        if point is not None and (not plateau or point.users == plateau[-1].users):
            plateau.append(point)
            continue
        if len(plateau) >= min_seconds and plateau[-1].users > 0:
            last = plateau[-1]
            out.append(Step(users=last.users, rps=last.rps, p95_ms=last.p95_ms, p99_ms=last.p99_ms,
                            failures=last.total_failures - failures_before))
            failures_before = last.total_failures
        plateau = [point] if point is not None else []
    return [s for s in out if s.users > 0]


def saturation(step_list: list[Step]) -> Step | None:
    """The step with the highest RPS among those with no errors."""
    clean = [s for s in step_list if s.failures == 0]
    return max(clean, key=lambda s: s.rps, default=None)
