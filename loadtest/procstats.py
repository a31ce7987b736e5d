"""CPU and memory of the processes under test.

Two instruments: ``CpuMeter`` charges exact CPU time (utime + stime from /proc, over a
measured window) to each named process tree, for CPU milliseconds per request;
``Sampler`` samples CPU % and RSS in a thread while a load test runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass
class ProcessUsage:
    name: str
    pid: int
    idle_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_samples: list[float] = field(default_factory=list)

    @property
    def mean_cpu(self) -> float:
        """Mean CPU % over the run (100 % = one core busy)."""
        return sum(self.cpu_samples) / len(self.cpu_samples) if self.cpu_samples else 0.0

    @property
    def peak_cpu(self) -> float:
        return max(self.cpu_samples, default=0.0)


def _tree(pid: int) -> list[psutil.Process]:
    """The process and its children (a service may run worker processes)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process tree, from /proc.

    A PostgreSQL server is a postmaster and a backend per connection that come and go.
    Summing ``utime + stime + cutime + cstime`` over the live tree is monotonic: a child
    that exits and is reaped by its parent (the postmaster reaps its backends) moves its
    time into the parent's ``cutime``/``cstime``, so nothing used in a window is lost
    whether the child lived through it or not.
    """
    total = 0.0
    for proc in _tree(pid):
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class CpuMeter:
    """CPU seconds each named process tree used between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._started: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._started = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.used = {name: max(0.0, tree_cpu_seconds(pid) - self._started[name]) for name, pid in self.pids.items()}
        return self.used

    def ms_per_request(self, requests: int) -> dict[str, float]:
        """CPU milliseconds per completed request, per process tree."""
        return {name: 1000 * seconds / requests for name, seconds in self.used.items()} if requests else {}


def rss_mb(pid: int) -> float:
    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / MB


class Sampler:
    """Samples CPU % and RSS of named processes every ``interval`` seconds until stopped."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.usage = {name: ProcessUsage(name, pid, idle_rss_mb=rss_mb(pid)) for name, pid in pids.items()}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstats", daemon=True)
        self._procs: dict[str, list[psutil.Process]] = {name: _tree(pid) for name, pid in pids.items()}

    def add(self, name: str, pid: int) -> None:
        """Track a process that starts after the sampler (the load generator)."""
        self.usage[name] = ProcessUsage(name, pid, idle_rss_mb=rss_mb(pid))
        self._procs[name] = _tree(pid)

    def __enter__(self) -> Sampler:
        for procs in self._procs.values():
            self._cpu(procs)  # psutil's first cpu_percent() call only sets the baseline
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @staticmethod
    def _cpu(procs: list[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            try:
                total += proc.cpu_percent(None)
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, procs in list(self._procs.items()):
                usage = self.usage[name]
                usage.cpu_samples.append(self._cpu(procs))
                usage.peak_rss_mb = max(usage.peak_rss_mb, rss_mb(usage.pid))


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:``port`` (a server's main process), if visible."""
    return listening_pids({"server": port}).get("server")


def listening_pids(ports: dict[str, int]) -> dict[str, int]:
    """Which local process listens on each port (for ``--host`` runs against a local stack)."""
    wanted = {port: name for name, port in ports.items()}
    found: dict[str, int] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return found
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted and conn.pid:
            found[wanted[conn.laddr.port]] = conn.pid
    return found
