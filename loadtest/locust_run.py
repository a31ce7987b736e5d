"""Run locust headless in a child process, bounded, with a one-line progress report.

A child process rather than locust's library API: locust monkey-patches the process it
runs in for gevent, which the runner (threads, subprocesses, psutil) and pytest must not
inherit.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtest.results import HistoryPoint, history

HERE = Path(__file__).parent
LOCUSTFILE = HERE / "locustfile.py"
STEP_SHAPE = HERE / "step_shape.py"
#: How long locust may take beyond the planned duration (start-up, stopping users).
GRACE_SECONDS = 60


@dataclass(frozen=True)
class StepPlan:
    users: int = 25
    seconds: int = 20
    max_users: int = 500
    p95_target_ms: float = 100.0
    spawn_rate: float = 5.0

    @property
    def max_duration(self) -> int:
        return self.seconds * math.ceil(self.max_users / self.users)

    def env(self) -> dict[str, str]:
        return {"FLOTILLA_STEP_USERS": str(self.users), "FLOTILLA_STEP_SECONDS": str(self.seconds),
                "FLOTILLA_STEP_MAX_USERS": str(self.max_users), "FLOTILLA_STEP_P95_MS": str(self.p95_target_ms),
                "FLOTILLA_STEP_SPAWN_RATE": str(self.spawn_rate)}


@dataclass(frozen=True)
class LocustFiles:
    out_dir: Path

    @property
    def prefix(self) -> Path:
        return self.out_dir / "locust"

    @property
    def json(self) -> Path:
        return self.out_dir / "locust.json"  # locust appends ".json" to --json-file

    @property
    def history(self) -> Path:
        return self.out_dir / "locust_stats_history.csv"

    @property
    def failures(self) -> Path:
        return self.out_dir / "locust_failures.csv"

    @property
    def html(self) -> Path:
        return self.out_dir / "report.html"

    @property
    def log(self) -> Path:
        return self.out_dir / "locust.log"


class LocustFailed(RuntimeError):
    pass


def run_locust(
    host: str,
    out_dir: Path,
    *,
    users: int = 50,
    spawn_rate: float = 10,
    duration: int = 30,
    step: StepPlan | None = None,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[HistoryPoint], None] | None = None,
) -> LocustFiles:
    """Run the reference workload against ``host``; returns where locust wrote its results.

    ``on_start`` gets locust's pid (to sample its CPU); ``on_progress`` gets the latest
    second of the run every few seconds.
    """
    files = LocustFiles(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    locustfiles = f"{LOCUSTFILE},{STEP_SHAPE}" if step else str(LOCUSTFILE)
    run_time = step.max_duration if step else duration
    load = [] if step else ["--users", str(users), "--spawn-rate", str(spawn_rate)]
    command = [
        sys.executable, "-m", "locust", "-f", locustfiles, "--headless", "--host", host, *load,
        "--run-time", f"{run_time}s", "--stop-timeout", "5", "--only-summary", "--loglevel", "WARNING",
        "--csv", str(files.prefix), "--csv-full-history", "--html", str(files.html), "--json-file", str(files.prefix),
    ]
    child_env = {**os.environ, **(step.env() if step else {}), **(env or {})}
    with files.log.open("wb") as log:
        process = subprocess.Popen(command, env=child_env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        if on_start is not None:
            on_start(process.pid)
        deadline = time.monotonic() + run_time + GRACE_SECONDS
        try:
            while process.poll() is None:
                if time.monotonic() > deadline:
                    raise LocustFailed(f"locust still running {GRACE_SECONDS}s after its run time; see {files.log}")
                time.sleep(1)
                points = history(files.history) if on_progress is not None else []
                if points and on_progress is not None:
                    on_progress(points[-1])
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if not files.json.exists():
        tail = files.log.read_text(errors="replace").splitlines()[-20:]
        raise LocustFailed(f"locust exited with {process.returncode} and wrote no results:\n  " + "\n  ".join(tail))
    return files
