"""The `flotilla` command: run the stack, one service, or its migrations."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from services.kit import catalog
from services.kit.app import VERSION
from services.kit.failures import describe_failure
from services.kit.ports import default_metrics_port
from services.launcher import LaunchError, Stack, available_services
from services.serve import PortInUse, load_settings, serve

#: Plain click help, up to 120 columns wide: typer's rich panels show flags as `--help <bool>`
#: and cut long option names with "…" on an 80-column terminal; click's wraps, never cuts.
HELP_SETTINGS: dict[str, Any] = {"max_content_width": 120, "help_option_names": ["-h", "--help"]}

app = typer.Typer(help="Flotilla: Kubernetes-native FastAPI microservices.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings=HELP_SETTINGS)

#: FLOTILLA_DEBUG=1: let errors through with their traceback instead of one line.
DEBUG_ENV = "FLOTILLA_DEBUG"


@contextmanager
def one_line_errors(what: str) -> Iterator[None]:
    """Turn the failures an operator can fix (settings, an unreachable or refusing
    database) into one line on stderr and exit code 1: an init container's log, or a
    terminal, shows what failed and what to do, not a few hundred lines of traceback."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        typer.secho(f"error: {what}: {describe_failure(exc)} (set {DEBUG_ENV}=1 for the traceback)",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None

def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flotilla {VERSION}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Flotilla: Kubernetes-native FastAPI microservices."""


ServiceName = Annotated[str, typer.Argument(help=f"one of: {', '.join(s.name for s in catalog.SERVICES)}")]


def _service(name: str) -> catalog.ServiceInfo:
    try:
        return catalog.by_name(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0])) from None


@app.command()
def up(
    host: Annotated[str, typer.Option(help="interface every service binds to")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(help="SQLite files and logs")] = Path(".flotilla"),
    database_url: Annotated[str, typer.Option(envvar="FLOTILLA_DATABASE_URL",
                                              help="PostgreSQL server URL; one database per service is created")] = "",
    redis_url: Annotated[str, typer.Option(envvar="FLOTILLA_REDIS_URL", help="Redis URL (cache, events)")] = "",
    port_offset: Annotated[int, typer.Option(help="add this to every service's port (8000 + offset, ...)")] = 0,
) -> None:
    """Run the whole stack locally, each service in its own process."""
    stack = Stack(host=host, data_dir=data_dir, database_url=database_url, redis_url=redis_url,
                  port_offset=port_offset)
    try:
        with one_line_errors("the stack did not start"):
            stack.start()
        took = stack.wait_ready()
        _print_banner(stack, took)
        stack.watch()
    except LaunchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        if stack.processes:
            typer.echo("stopping services ...", err=True)
            stack.stop()


def _print_banner(stack: Stack, took: float) -> None:
    mode = []
    mode.append("PostgreSQL" if stack.database_url else f"SQLite files in {stack.data_dir}/")
    mode.append("Redis" if stack.redis_url else "in-process cache")
    typer.secho(f"Flotilla is up in {took:.1f}s ({', '.join(mode)}); logs in {stack.data_dir / 'logs'}/",
                fg=typer.colors.GREEN)
    for service in stack.services:
        typer.echo(f"  {service.name:<8} {stack.url(service):<24} {service.summary}")
    for dependency, services in stack.dependencies_down().items():
        typer.secho(f"  warning: {dependency} is unreachable (reported by {services}); running degraded "
                    "until it answers", fg=typer.colors.YELLOW)
    base = stack.url(catalog.GATEWAY)
    typer.echo(f"\nAPI docs: {base}/docs\nTry it (paste into a shell):\n")
    typer.echo(EXAMPLE.format(base=base))
    typer.echo("Ctrl-C stops everything.")


EXAMPLE = """\
  curl -s -X POST {base}/api/v1/auth/register -H 'content-type: application/json' \\
       -d '{{"email": "me@example.com", "password": "correct-horse-battery"}}'
  TOKEN=$(curl -s -X POST {base}/api/v1/auth/login -H 'content-type: application/json' \\
       -d '{{"email": "me@example.com", "password": "correct-horse-battery"}}' \\
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST {base}/api/v1/tasks -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"title": "Ship it", "priority": "high"}}'
  curl -s {base}/api/v1/tasks -H "Authorization: Bearer $TOKEN"
"""


@app.command("serve")
def serve_command(
    service: Annotated[str, typer.Argument(envvar="FLOTILLA_SERVICE", help="service to run")],
    host: Annotated[str, typer.Option(envvar="FLOTILLA_HOST")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(envvar="FLOTILLA_PORT",
                                             help="default: the service's local port")] = None,
    metrics_port: Annotated[int | None, typer.Option(envvar="FLOTILLA_METRICS_PORT",
                                                     help="/metrics and the full /health; default: port + 1000")
                            ] = None,
) -> None:
    """Run one service (what a container runs)."""
    info = _service(service)
    try:
        with one_line_errors(f"{service} did not start"):
            serve(info, host=host, port=port or info.local_port, metrics_port=metrics_port)
    except PortInUse as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command(short_help="Apply a service's database migrations.")
def migrate(
    service: ServiceName,
    embedded: Annotated[bool, typer.Option("--embedded", help="migrate the embedded SQLite file in the data "
                                           "directory when no database URL is set (`flotilla up` does this "
                                           "itself on start)")] = False,
) -> None:
    """Apply a service's database migrations (idempotent; safe to run from many pods).

    The database is <SERVICE>_DATABASE_URL (e.g. TASKS_DATABASE_URL); without it the command
    refuses rather than create a SQLite file nobody will read, unless --embedded says so.
    """
    info = _service(service)
    if not info.has_database:
        typer.echo(f"{service} has no database; nothing to do")
        return
    with one_line_errors(f"{service}: migrations not applied"):
        settings = load_settings(info)
    if not settings.database_url.get_secret_value() and not embedded:
        variable = f"{catalog.env_prefix(info.name)}DATABASE_URL"
        typer.secho(f"error: {service}: no database to migrate: set {variable} to its PostgreSQL URL, or pass "
                    f"--embedded for the SQLite file in {settings.data_dir}/", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)

    async def run() -> None:
        from services.kit.db import Database  # only here: serving the gateway never loads SQLAlchemy
        from services.kit.migrations import upgrade

        db = Database(settings)
        try:
            await upgrade(db, service=info.name, script_location=Path(__file__).parent / info.name / "migrations")
        finally:
            await db.dispose()

    with one_line_errors(f"{service}: migrations not applied"):
        asyncio.run(run())
    typer.echo(f"{service}: migrations applied")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False,
             short_help="Load test and benchmarks; needs the `loadtest` extra.")
def loadtest(ctx: typer.Context) -> None:
    """Load test and benchmarks (`flotilla loadtest --help`); needs the `loadtest` extra."""
    # Imported lazily: locust and matplotlib are heavy and optional for running services.
    from loadtest.__main__ import app as loadtest_app

    loadtest_app(ctx.args, prog_name="flotilla loadtest")


@app.command("services")
def list_services() -> None:
    """List the services, their local ports (API, metrics) and routes."""
    present = {s.name for s in available_services()}
    for s in catalog.SERVICES:
        flag = "" if s.name in present else "  (not installed)"
        ports = f":{s.local_port} :{default_metrics_port(s.local_port)}"
        typer.echo(f"{s.name:<8} {ports}  {', '.join(s.routes) or '-':<40} {s.summary}{flag}")


Namespace = Annotated[str, typer.Option(help="the ServiceSpec's namespace (dashboards' default, rules' filter)")]
Availability = Annotated[float, typer.Option(help="availability SLO in percent (spec.dashboards.slo.availability)")]
LatencyP95 = Annotated[int, typer.Option(help="latency SLO: P95 in milliseconds (spec.dashboards.slo.latencyP95Ms)")]
AsObject = Annotated[bool, typer.Option("--kubernetes", help="the Kubernetes object the operator writes "
                                                             "(ConfigMap, PrometheusRule) instead of the bare content")]


def _monitoring(names: list[str], namespace: str, availability: float, latency_p95_ms: int) -> tuple[Any, list[Any]]:
    """The operator's dashboards module and one ServiceSpec per name, or a one-line error.

    The operator package comes with a source install (``pip install -e .``); a service
    image may not have it, so it is imported only here.
    """
    try:
        from flotilla_operator import dashboards, spec
    except ImportError:
        typer.secho("error: the operator package (flotilla_operator) is not installed; "
                    "install Flotilla from source: pip install -e .", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    specs = []
    for name in names:
        try:
            specs.append(spec.parse({"metadata": {"name": name, "namespace": namespace}, "spec": {
                "dashboards": {"slo": {"availability": availability, "latencyP95Ms": latency_p95_ms}}}}))
        except spec.InvalidSpec as exc:
            typer.secho(f"error: {name}: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    return dashboards, specs


@app.command(short_help="Print the Grafana dashboard generated for a service.")
def dashboards(
    service: Annotated[str, typer.Argument(help="the ServiceSpec's name (gateway, tasks, ...)")],
    namespace: Namespace = "flotilla",
    availability: Availability = 99.9,
    latency_p95_ms: LatencyP95 = 300,
    kubernetes: AsObject = False,
) -> None:
    """Print the Grafana dashboard (JSON) the operator generates for a service
    (`operator`: the operator's own)."""
    if service == "operator":
        module, _ = _monitoring([], namespace, availability, latency_p95_ms)
        typer.echo(json.dumps(module.operator_dashboard(namespace), indent=2, sort_keys=True))
        return
    module, (one,) = _monitoring([service], namespace, availability, latency_p95_ms)
    body = module.dashboard_configmap(one) if kubernetes else module.dashboard(one)
    typer.echo(json.dumps(body, indent=2, sort_keys=True))


@app.command(short_help="Print the Prometheus rules generated for services.")
def rules(
    services: Annotated[list[str] | None, typer.Argument(
        help="ServiceSpec names (`operator`: the operator's own alerts); none: every Flotilla "
             "service and the operator, in one file")] = None,
    namespace: Namespace = "flotilla",
    availability: Availability = 99.9,
    latency_p95_ms: LatencyP95 = 300,
    kubernetes: AsObject = False,
) -> None:
    """Print the Prometheus rules (YAML: SLO recording rules, burn-rate and event alerts) the
    operator generates; a rules file for `rule_files`, or PrometheusRule objects."""
    import yaml  # only here: the services themselves never need it at start-up

    names = services or [*(s.name for s in catalog.SERVICES), "operator"]
    module, specs = _monitoring([n for n in names if n != "operator"], namespace, availability, latency_p95_ms)
    if kubernetes:
        objects = [module.prometheus_rule(s) for s in specs]
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False, width=1 << 16), nl=False)
    else:
        groups = [g for s in specs for g in module.rule_groups(s)]
        groups += module.operator_rule_groups() if "operator" in names else []
        typer.echo(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1 << 16), nl=False)


@app.command("new-service", short_help="Scaffold a new service and wire it everywhere.")
def new_service(
    name: Annotated[str, typer.Argument(help="Lowercase letters and digits, e.g. notes.")],
    route: Annotated[str | None, typer.Option(help="Public path prefix. Default: /api/v1/<name>.")] = None,
    summary: Annotated[str, typer.Option(help="One-line purpose, for `flotilla services` and the charts.")] = "",
) -> None:
    """Create services/<name>/ (CRUD example resource, migration) and its tests, add it to the
    catalog, and regenerate the charts, skaffold.yaml and k8s examples from the catalog."""
    from services.kit.names import BadServiceName
    from services.kit.scaffold import new_service as scaffold  # imported on use: keeps start-up light

    try:
        done = scaffold(name, route=route, summary=summary)
    except BadServiceName as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    root = Path.cwd()
    for label, paths in (("created", done.created), ("updated", done.touched)):
        for path in paths:
            typer.echo(f"{label}: {path.relative_to(root) if path.is_relative_to(root) else path}")
    typer.echo(f"next: review services/{name}/, then `make test`; `make up` serves it behind the gateway")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
