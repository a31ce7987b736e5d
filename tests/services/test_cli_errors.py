"""What an operator sees when a command fails: one line saying what and what to do, exit 1
(and `--version`)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

from services.launcher import per_service_database_url
from tests.support.servers import PostgresServer, free_port


def migrate(database_url: str, *, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKS_DATABASE_URL": database_url}
    env.pop("FLOTILLA_DEBUG", None)
    if debug:
        env["FLOTILLA_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "services.cli", "migrate", "tasks"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("url", "says"), [
    ("notaurl", "unsupported database URL"),
    ("mysql://user@127.0.0.1/db", "unsupported database URL (mysql)"),
    (f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres", "cannot connect to the database"),
])
def test_a_bad_database_url_is_one_line_and_exit_1(url: str, says: str) -> None:
    result = migrate(url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: tasks: migrations not applied: ")
    assert says in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_refused_login_names_the_cause(postgres_server: PostgresServer) -> None:
    url = postgres_server.dsn("postgres", driver="postgresql").replace(":test-only", ":wrong-password-test-only")
    result = migrate(url)
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr
    assert "wrong-password" not in result.stderr  # the URL's secret is never echoed
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback() -> None:
    result = migrate("notaurl", debug=True)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


@pytest.mark.parametrize(("url", "tasks_url"), [
    ("postgresql://u:p@db:5432/flotilla", "postgresql://u:p@db:5432/flotilla_tasks"),
    ("postgresql://u:p@db:5432/staging?ssl=require", "postgresql://u:p@db:5432/staging_tasks?ssl=require"),
    ("postgresql://u:p@db:5432", "postgresql://u:p@db:5432/flotilla_tasks"),
])
def test_the_urls_database_name_is_the_prefix_of_every_services_database(url: str, tasks_url: str) -> None:
    assert per_service_database_url(url, "tasks") == tasks_url


def test_version_is_the_installed_distributions() -> None:
    result = subprocess.run([sys.executable, "-m", "services.cli", "--version"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == f"flotilla {importlib.metadata.version('flotilla')}"
