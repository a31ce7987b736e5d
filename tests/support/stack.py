"""The stack as real processes, for end-to-end and chaos tests.

``Stack`` (services/launcher.py) runs every service as ``flotilla serve``; here are the
test-side helpers around it: a free block of ports, a stack with extra environment
(tuning a test needs, without touching the test runner's own ``os.environ``), a lone
service process on a port of its own, and the account helpers every flow starts with.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.kit import catalog
from services.kit.catalog import ServiceInfo
from services.launcher import Stack

PASSWORD = "correct-horse-battery-staple"


def free_port_block() -> int:
    """An offset such that every catalog port + offset is free on 127.0.0.1.

    Offsets land the ports in 10000-29999, below Linux's ephemeral range (32768+), so
    outgoing connections of other processes cannot grab them between check and bind.
    """
    ports = [s.local_port for s in catalog.SERVICES]
    rng = random.Random()
    for _ in range(100):
        offset = rng.randrange(10000, 30000 - 10) - min(ports)
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port block")


@dataclass
class TunedStack(Stack):
    """A Stack whose services also get ``extra_env`` (wins over everything else)."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def env_for(self, service: ServiceInfo) -> dict[str, str]:
        return {**super().env_for(service), **self.extra_env}

    def pid(self, service: ServiceInfo) -> int:
        return self.processes[service.name].pid


@dataclass
class ServiceProcess:
    """One ``flotilla serve <name>`` on a port of its own (a second replica, a lone service)."""

    service: ServiceInfo
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", self.service.name,
                 "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.service.name} on {self.port} exited {self.process.returncode}:\n"
                                       + self.log_path.read_text(errors="replace")[-3000:])
                try:
                    if client.get(f"{self.url}/health/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"{self.service.name} on {self.port} not ready after {timeout}s")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url(catalog.GATEWAY), timeout=10)


def register_and_login(client: httpx.Client, email: str, password: str = PASSWORD) -> dict[str, str]:
    created = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    tokens: dict[str, str] = login.json()
    return tokens


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
