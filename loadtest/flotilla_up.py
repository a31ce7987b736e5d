"""How long `flotilla up` takes to all-ready on embedded defaults, and each service's idle RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import psutil

from loadtest.procstats import rss_mb
from loadtest.stack import runnable_services
from services.serve import PortInUse, ensure_port_free


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
