"""Real PostgreSQL and Redis servers for tests: temp dirs, free ports, stoppable.

Each server can be stopped and started again on the same port and data directory, so
outage tests can take a dependency away and bring it back without the services
noticing anything but the outage itself.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis

from services.launcher import free_port as free_port  # re-exported for the tests

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
#: PostgreSQL refuses to run as root; when tests run as root the server runs as this user.
PG_UNPRIVILEGED_USER = "postgres"
PG_SUPERUSER = "postgres"
PG_SUPERUSER_PASSWORD = "test-only-superuser-password"  # dev/test default, never deployed


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _pg_bin(tool: str) -> str:
    for directory in PG_BIN_CANDIDATES:
        candidate = Path(directory) / tool
        if candidate.exists():
            return str(candidate)
    found = shutil.which(tool)
    if found:
        return found
    raise RuntimeError(f"PostgreSQL tool {tool!r} not found; `make test` installs PostgreSQL via apt")


def _demote_args() -> list[str]:
    """Prefix for commands that must not run as root."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", PG_UNPRIVILEGED_USER, "--"]


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb) listening on 127.0.0.1:port."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flotilla-pg-")))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres", *, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{PG_SUPERUSER}:{PG_SUPERUSER_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_SUPERUSER_PASSWORD)
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_UNPRIVILEGED_USER)
            os.chmod(self.root, 0o700)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        subprocess.run(
            [*_demote_args(), _pg_bin("initdb"), "-D", str(self.data_dir), "-U", PG_SUPERUSER,
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True,
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 300\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    def start(self) -> None:
        if not self.data_dir.exists():
            self.init()
        subprocess.run(
            [*_demote_args(), _pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l",
             str(self.root / "server.log"), "-w", "-t", "60", "start"],
            check=True, capture_output=True,
        )
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [*_demote_args(), _pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            check=False, capture_output=True,
        )

    def create_database(self, name: str) -> str:
        """Create database ``name`` (idempotent) and return its asyncpg URL."""
        if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
            raise ValueError(f"test database names are [a-z0-9_]{{1,63}}, not {name!r}")
        env = {**os.environ, "PGPASSWORD": PG_SUPERUSER_PASSWORD}
        exists = subprocess.run(
            [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER, "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608 - name checked above
            check=True, capture_output=True, text=True, env=env,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER, name],
                check=True, capture_output=True, env=env,
            )
        return self.dsn(name)

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """A throwaway redis-server listening on 127.0.0.1:port (no persistence)."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flotilla-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             # AOF like a production Redis holding streams: a restart keeps undelivered events.
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def flush(self) -> None:
        """Empty every database: what one test cached or counted is not the next test's state.

        Services' key prefixes are fixed (``data:popular:...``, ``tasks:...``), so tests on a
        session-wide server would otherwise read each other's caches (tests run one at a time).
        """
        with redis.Redis.from_url(self.url, socket_timeout=10) as client:
            client.flushall()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


Server = TypeVar("Server", PostgresServer, RedisServer)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server``; stop it and remove its files afterwards, whatever happens."""
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
