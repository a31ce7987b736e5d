"""`flotilla up`: every service in its own process, ports from the catalog.

Each service runs as ``flotilla serve <name>`` in a child process with its settings in
its environment (the same way a pod gets them), logs to ``<data-dir>/logs/<name>.log``.
The launcher waits until every /health/ready answers, prints where things are, and
stops all children on Ctrl-C or when one of them dies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from services.kit import catalog
from services.kit.catalog import ServiceInfo
from services.kit.ports import default_metrics_port
from services.serve import PortInUse, ensure_port_free


class LaunchError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_offset(host: str = "127.0.0.1") -> int:
    """An offset such that every catalog port + offset is free: a stack beside another.

    Offsets land the ports in 10000-29999, below Linux's ephemeral range (32768+), so
    outgoing connections of other processes cannot grab them between check and bind.
    """
    api_ports = [s.local_port for s in catalog.SERVICES]
    ports = api_ports + [default_metrics_port(port) for port in api_ports]
    for _ in range(100):
        offset = 10000 + secrets.randbelow(20000 - 10) - min(api_ports)
        try:
            for port in ports:
                ensure_port_free(host, port + offset)
        except PortInUse:
            continue
        return offset
    raise LaunchError("no free block of ports for the services")


def serve_command(service: ServiceInfo, *, host: str, port: int, metrics_port: int | None = None) -> list[str]:
    """How every service process is started: ``flotilla serve`` with this interpreter."""
    command = [sys.executable, "-m", "services.cli", "serve", service.name, "--host", host, "--port", str(port)]
    return command if metrics_port is None else [*command, "--metrics-port", str(metrics_port)]


def available_services() -> list[ServiceInfo]:
    """Catalog services whose package is present (all of them in a full install)."""
    return [s for s in catalog.SERVICES if importlib.util.find_spec(f"services.{s.name}") is not None]


#: The prefix of the per-service databases when the URL names no database.
DEFAULT_DATABASE_PREFIX = "flotilla"
#: Where the launcher connects to create the per-service databases (every server has it).
MAINTENANCE_DATABASE = "postgres"


def database_prefix(base_url: str) -> str:
    """The database the URL names is the prefix: ``.../dev`` gives ``dev_tasks``, ``dev_auth``..."""
    return unquote(urlsplit(base_url).path.strip("/")) or DEFAULT_DATABASE_PREFIX


def _with_database(base_url: str, name: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def per_service_database_url(base_url: str, service: str) -> str:
    """One database per service on the given server: ``<prefix>_<service>`` (see database_prefix)."""
    return _with_database(base_url, quote(f"{database_prefix(base_url)}_{service}"))


async def ensure_databases(base_url: str, services: list[ServiceInfo]) -> None:
    import asyncpg  # only needed with --database-url

    maintenance = _with_database(base_url, MAINTENANCE_DATABASE)
    conn = await asyncpg.connect(maintenance.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        for service in services:
            if not service.has_database:
                continue
            name = f"{database_prefix(base_url)}_{service.name}"
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                # The name comes partly from the operator's URL: a quoted identifier, quotes doubled.
                quoted = name.replace('"', '""')
                await conn.execute(f'CREATE DATABASE "{quoted}"')
    finally:
        await conn.close()


@dataclass
class Stack:
    host: str = "127.0.0.1"
    data_dir: Path = Path(".flotilla")
    database_url: str = ""
    redis_url: str = ""
    #: Shift every catalog port by this much (run a second stack, or tests, side by side).
    port_offset: int = 0
    services: list[ServiceInfo] = field(default_factory=available_services)
    #: Environment every service gets on top of everything else (tuning for tests and load tests).
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Shared by tasks and data for the internal event ingest (embedded mode); new per run.
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: Shared by the gateway and every service (services.kit.forwarding); new per run.
    forwarding_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def port(self, service: ServiceInfo) -> int:
        return service.local_port + self.port_offset

    def url(self, service: ServiceInfo) -> str:
        return f"http://{self.host}:{self.port(service)}"

    def metrics_url(self, service: ServiceInfo) -> str:
        """Where the service's /metrics and full /health report are (``services.kit.ports``)."""
        return f"http://{self.host}:{default_metrics_port(self.port(service))}"

    def env_for(self, service: ServiceInfo) -> dict[str, str]:
        prefix = catalog.env_prefix(service.name)
        env = {
            f"{prefix}ENVIRONMENT": "development",
            f"{prefix}DATA_DIR": str(self.data_dir.resolve()),
            f"{prefix}LOG_JSON": "true",
            f"{prefix}MIGRATE_ON_START": "true",
            f"{prefix}JWKS_URL": f"{self.url(catalog.AUTH)}/.well-known/jwks.json",
            f"{prefix}INTERNAL_TOKEN": self.internal_token,
            f"{prefix}FORWARDING_TOKEN": self.forwarding_token,
        }
        if self.database_url and service.has_database:
            env[f"{prefix}DATABASE_URL"] = per_service_database_url(self.database_url, service.name)
        if self.redis_url:
            env[f"{prefix}REDIS_URL"] = self.redis_url
        # Where every other service is: the gateway routes to them, tasks' relay posts
        # events to data without Redis. Settings ignore the ones they do not declare.
        for other in catalog.BACKENDS:
            if other is not service:
                env[f"{prefix}{other.name.upper()}_URL"] = self.url(other)
        # What the user exported wins over our defaults (12-factor).
        return {**env, **os.environ, **self.extra_env}

    def log_path(self, service: ServiceInfo) -> Path:
        return self.data_dir / "logs" / f"{service.name}.log"

    def check_ports(self) -> None:
        for service in self.services:
            for port in (self.port(service), default_metrics_port(self.port(service))):
                try:
                    ensure_port_free(self.host, port)
                except PortInUse as exc:
                    raise LaunchError(f"cannot start {service.name}: {exc}. Stop whatever uses it "
                                      f"(`ss -ltnp 'sport = :{port}'`) and try again.") from None

    def start(self) -> None:
        self.check_ports()
        if self.database_url:
            asyncio.run(ensure_databases(self.database_url, self.services))
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        for service in self.services:
            self.start_one(service)

    def start_one(self, service: ServiceInfo) -> None:
        with self.log_path(service).open("ab") as log:
            self.processes[service.name] = subprocess.Popen(  # noqa: S603 - our own interpreter and args
                serve_command(service, host=self.host, port=self.port(service)),
                env=self.env_for(service), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
            )

    @contextmanager
    def running(self, timeout: float = 60.0) -> Iterator[float]:
        """Start every service, wait until all are ready (yields how long that took), stop them after."""
        try:
            self.start()
            yield self.wait_ready(timeout=timeout)
        finally:
            self.stop()

    def pids(self) -> dict[str, int]:
        """Process ids of the services that are running."""
        return {name: p.pid for name, p in self.processes.items() if p.poll() is None}

    def stop_one(self, service: ServiceInfo, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Stop one service (SIGTERM: graceful; SIGKILL: a crash). Returns its exit code."""
        process = self.processes.pop(service.name)
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def wait_ready(self, timeout: float = 60.0, services: list[ServiceInfo] | None = None) -> float:
        started = time.monotonic()
        pending = {s.name: s for s in (services or self.services)}
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for name, service in list(pending.items()):
                    self.raise_if_dead(service)
                    try:
                        if client.get(f"{self.url(service)}/health/ready").status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                if time.monotonic() - started > timeout:
                    raise LaunchError(f"not ready after {timeout:.0f}s: {', '.join(pending)}; "
                                      f"see {self.data_dir / 'logs'}")
                if pending:
                    time.sleep(0.05)
        return time.monotonic() - started

    def dependencies_down(self) -> dict[str, str]:
        """Dependencies some service reports down (``{"redis": "tasks, users"}``), from each
        service's full /health report: a stack can be ready with Redis away (it degrades)."""
        down: dict[str, list[str]] = {}
        with httpx.Client(timeout=3.0) as client:
            for service in self.services:
                try:
                    checks = client.get(f"{self.metrics_url(service)}/health").json().get("checks", {})
                except (httpx.HTTPError, ValueError):
                    continue
                for dependency, check in checks.items():
                    if isinstance(check, dict) and check.get("status") == "down":
                        down.setdefault(dependency, []).append(service.name)
        return {dependency: ", ".join(names) for dependency, names in down.items()}

    def raise_if_dead(self, service: ServiceInfo) -> None:
        process = self.processes.get(service.name)
        if process is not None and process.poll() is not None:
            tail = self.log_path(service).read_text(errors="replace").splitlines()[-15:]
            raise LaunchError(f"{service.name} exited with code {process.returncode}. Last log lines:\n  "
                              + "\n  ".join(tail))

    def watch(self) -> None:
        """Block until Ctrl-C/SIGTERM or until a service dies."""
        stop = False

        def request_stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop:
            for service in self.services:
                self.raise_if_dead(service)
            time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
