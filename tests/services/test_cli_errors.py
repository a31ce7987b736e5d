"""What an operator sees when a command fails: one line saying what and what to do, exit 1
(and `--version`)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

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


def test_migrate_without_a_database_url_refuses_instead_of_writing_sqlite(tmp_path: Path) -> None:
    """`flotilla up` migrates its embedded files itself; `migrate` is for real databases."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"TASKS_DATABASE_URL", "FLOTILLA_DEBUG", "TASKS_DATA_DIR"}}
    result = subprocess.run([sys.executable, "-m", "services.cli", "migrate", "tasks"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TASKS_DATABASE_URL" in lines[0]
    assert "--embedded" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no ./.flotilla/tasks.db

    embedded = subprocess.run([sys.executable, "-m", "services.cli", "migrate", "tasks", "--embedded"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert embedded.returncode == 0, embedded.stderr
    assert (tmp_path / ".flotilla" / "tasks.db").exists()


def _command_names(typer_app: typer.Typer) -> list[str]:
    """Commands that answer --help themselves (`flotilla loadtest` hands it to its own CLI)."""
    names = []
    for command in typer_app.registered_commands:
        if command.add_help_option and command.callback is not None:
            names.append(command.name or command.callback.__name__.replace("_", "-"))
    return names


@pytest.mark.parametrize("program", ["flotilla", "loadtest"])
def test_help_is_clean_and_never_cut_at_80_columns(program: str) -> None:
    """No `--help <bool>` (a flag takes no value), and nothing cut short with "…" at 80 columns."""
    from loadtest.__main__ import app as loadtest_app
    from services.cli import app as flotilla_app

    typer_app = flotilla_app if program == "flotilla" else loadtest_app
    runner = CliRunner()
    for args in ([], *([name] for name in _command_names(typer_app))):
        result = runner.invoke(typer_app, [*args, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert result.exit_code == 0, (args, result.output)
        text = result.output
        assert "<bool>" not in text, (args, text)
        assert "…" not in text, (args, text)
        assert "..." not in text.partition("Commands:")[2], (args, text)
        assert max(len(line) for line in text.splitlines()) <= 80, (args, text)
    assert len(_command_names(typer_app)) >= 4
