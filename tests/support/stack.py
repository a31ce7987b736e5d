"""The stack as real processes, for end-to-end and chaos tests.

``Stack`` (services/launcher.py) runs every service as ``flotilla serve``; here are the
test-side helpers around it: a lone service process on a port of its own, and the
account helpers every flow starts with.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.kit import catalog
from services.kit.catalog import ServiceInfo
from services.launcher import Stack, free_port, free_port_offset, serve_command
from tests.support import tokens
from tests.support.servers import stop_process

# Re-exported: tests take the stack helpers from here.
__all__ = ["PASSWORD", "SHARED_STACK_ENV", "ServiceProcess", "Stack", "bearer", "free_port", "free_port_offset",
           "gateway", "lone_service", "register_and_login"]

PASSWORD = "correct-horse-battery-staple"

#: For a stack that many tests share (chaos), or whose Redis they share (e2e): every
#: request comes from 127.0.0.1, so auth's per-address login budget would be one budget
#: for the whole suite, spent by whichever tests ran first. Raised here; the limits
#: themselves are proven on auth apps of their own (tests/services/test_auth_login_limits.py).
SHARED_STACK_ENV = {"AUTH_LOGIN_LIMIT_PER_IP": "1000000/minute"}


@dataclass
class ServiceProcess:
    """One ``flotilla serve <name>`` on a port of its own (a second replica, a lone service)."""

    service: ServiceInfo
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    #: Free too: ``port + 1000`` (the default) need not be.
    metrics_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                serve_command(self.service, host="127.0.0.1", port=self.port, metrics_port=self.metrics_port),
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
            stop_process(self.process, timeout=15)


@contextmanager
def lone_service(service: ServiceInfo, data_dir: Path, **settings: str) -> Iterator[ServiceProcess]:
    """One ``flotilla serve`` on free ports, ready: embedded defaults in ``data_dir``, the
    test signing keys, every service it would call unreachable; ``settings`` by field name
    (``max_body_bytes="65536"`` sets ``<SVC>_MAX_BODY_BYTES``)."""
    prefix = catalog.env_prefix(service.name)
    env = {
        **os.environ,
        f"{prefix}ENVIRONMENT": "test",
        f"{prefix}DATA_DIR": str(data_dir),
        f"{prefix}JWT_PUBLIC_JWKS": tokens.test_jwks(),
        **{f"{prefix}{other.name.upper()}_URL": f"http://127.0.0.1:{free_port()}"
           for other in catalog.BACKENDS if other is not service},
        **{f"{prefix}{name.upper()}": value for name, value in settings.items()},
    }
    process = ServiceProcess(service, free_port(), env, data_dir / f"{service.name}.log")
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


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
