"""PNG of a run: latency percentiles and throughput over time."""

from __future__ import annotations

from pathlib import Path

# Figure without pyplot: renders with the Agg canvas, no global backend or display state.
from matplotlib.figure import Figure

from loadtest.results import HistoryPoint


def plot_history(points: list[HistoryPoint], path: Path, *, title: str) -> Path:
    seconds = [p.seconds for p in points]
    fig = Figure(figsize=(9, 6), dpi=80)
    latency, throughput = fig.subplots(2, 1, sharex=True)
    for label, values in (("P50", [p.p50_ms for p in points]), ("P95", [p.p95_ms for p in points]),
                          ("P99", [p.p99_ms for p in points])):
        latency.plot(seconds, values, label=label)
    latency.set_ylabel("latency, ms (10 s window)")
    latency.legend(loc="upper left")
    latency.grid(alpha=0.3)
    latency.set_title(title)
    throughput.plot(seconds, [p.rps for p in points], color="tab:green", label="requests/s")
    throughput.set_ylabel("requests/s")
    throughput.set_xlabel("seconds")
    throughput.grid(alpha=0.3)
    users = throughput.twinx()
    users.plot(seconds, [p.users for p in points], color="tab:gray", linestyle="--", label="users")
    users.set_ylabel("users")
    lines = throughput.get_lines() + users.get_lines()
    throughput.legend(lines, [str(line.get_label()) for line in lines], loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    return path
