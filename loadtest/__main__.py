"""`python -m loadtest run|bench|connections|burst|scale`: the reference load test, the
side-by-side benchmark, and the bounded stress modes (many connections, login burst,
cost as the data grows)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loadtest.bench import UNCACHED_MODES, bench
from loadtest.locust_run import LocustFailed, StepPlan
from loadtest.runner import results_dir, run

# Plain, wide help (as `flotilla`'s, services/cli.py): rich panels cut long option names at 80 columns.
app = typer.Typer(help="Flotilla load test and benchmark.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None, context_settings={"max_content_width": 120})

DatabaseUrl = Annotated[str, typer.Option(envvar="FLOTILLA_DATABASE_URL",
                                          help="PostgreSQL server URL; default: a throwaway server")]
RedisUrl = Annotated[str, typer.Option(envvar="FLOTILLA_REDIS_URL", help="Redis URL; default: a throwaway server")]


@app.command("run", short_help="The reference workload: RPS, latency, errors, CPU, RSS.")
def run_command(
    host: Annotated[str, typer.Option(help="base URL of a running stack's gateway; default: start a private "
                                           "stack on real PostgreSQL/Redis")] = "",
    users: Annotated[int, typer.Option(min=1, max=5000, help="concurrent simulated users")] = 100,
    spawn_rate: Annotated[float, typer.Option(min=0.1, help="users started per second; each costs auth two "
                                                             "argon2 hashes (register, login)")] = 5,
    duration: Annotated[int, typer.Option(min=1, max=3600, help="seconds of load")] = 60,
    recommendations: Annotated[bool, typer.Option(help="add GET /api/v1/recommendations/{user_id}")] = False,
    step: Annotated[bool, typer.Option(help="add users in steps until P95 passes the target or errors appear")] = False,
    step_users: Annotated[int, typer.Option(min=1, help="users added per step")] = 25,
    step_seconds: Annotated[int, typer.Option(min=12, help="seconds per step (>= 12: the P95 window is 10 s)")] = 20,
    max_users: Annotated[int, typer.Option(min=1, max=5000, help="step mode stops here at the latest")] = 500,
    p95_target_ms: Annotated[float, typer.Option(help="step mode stops after a step with a higher P95")] = 100,
    database_url: DatabaseUrl = "",
    redis_url: RedisUrl = "",
) -> None:
    """Run the reference workload and print RPS, P50/P95/P99, errors, CPU and RSS per service."""
    plan = StepPlan(step_users, step_seconds, max_users, p95_target_ms, spawn_rate) if step else None
    try:
        run(host=host, users=users, spawn_rate=spawn_rate, duration=duration, step=plan,
            recommendations=recommendations, database_url=database_url, redis_url=redis_url)
    except (LocustFailed, RuntimeError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command("bench", short_help="Side by side: bare baselines, services, the gateway.")
def bench_command(
    connections: Annotated[int, typer.Option(min=1, max=1024, help="concurrent connections (fixed)")] = 64,
    seconds: Annotated[int, typer.Option(min=1, max=120, help="measured seconds per target")] = 10,
    warmup: Annotated[int, typer.Option(min=0, max=30, help="warm-up seconds per target")] = 3,
    users: Annotated[int, typer.Option(min=1, max=1000, help="users (tokens) of the reference mix (8)")] = 50,
    uncached: Annotated[str, typer.Option(help="how (7) misses the cache: 'setting' (a tasks process with "
                                               "TASKS_CACHE_ENABLED=false), 'cursor' (a new cursor per "
                                               "request), 'auto' (the setting when tasks has it)")] = "auto",
    up: Annotated[bool, typer.Option(help="also time `flotilla up` on embedded defaults")] = True,
    wait_for_quiet: Annotated[int, typer.Option(min=0, max=1800, help="wait up to this many seconds for the "
                                                                       "1-minute load average to drop")] = 0,
    max_load: Annotated[float, typer.Option(help="what counts as quiet")] = 1.0,
    database_url: DatabaseUrl = "",
    redis_url: RedisUrl = "",
    out: Annotated[Path | None, typer.Option(help="results directory; default loadtest/results/<time>-bench")] = None,
    profile: Annotated[Path | None, typer.Option(help="write py-spy flame graphs (SVG) of the gateway, tasks and "
                                                      "data under the reference mix (8) here (needs py-spy)")] = None,
) -> None:
    """Bare baselines vs the services direct, through the gateway and under the reference mix:
    RPS, latency and CPU ms per request per process, one run, this machine."""
    if uncached not in UNCACHED_MODES:
        raise typer.BadParameter(f"--uncached must be one of {', '.join(UNCACHED_MODES)}")
    try:
        bench(connections=connections, seconds=seconds, warmup_seconds=warmup, users=users,
              uncached=uncached, database_url=database_url, redis_url=redis_url,
              out_dir=out or results_dir(label="bench"), max_load=max_load, wait_seconds=wait_for_quiet,
              measure_up=up, profile_dir=profile)
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command("connections", short_help="Many keep-alive connections at an open-loop rate.")
def connections_command(
    connections: Annotated[int, typer.Option(min=1, max=60_000, help="concurrent keep-alive connections")] = 10_000,
    rate_fraction: Annotated[float, typer.Option(min=0.01, max=2.0, help="open-loop rate as a fraction of the "
                                                                         "measured capacity")] = 0.7,
    seconds: Annotated[float, typer.Option(min=1, max=300, help="seconds of open-loop load")] = 30,
    users: Annotated[int, typer.Option(min=1, max=1000, help="users whose tokens the connections use")] = 20,
    capacity: Annotated[float, typer.Option(min=0, help="capacity in req/s; 0: measure it with wrk")] = 0,
    capacity_connections: Annotated[int, typer.Option(min=1, max=1024, help="wrk connections for capacity")] = 64,
    capacity_seconds: Annotated[int, typer.Option(min=1, max=60, help="seconds of the capacity run")] = 5,
    open_rate: Annotated[float, typer.Option(min=1, help="new connections per second at most")] = 1000,
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="per-request timeout, seconds")] = 10,
    database_url: DatabaseUrl = "",
    redis_url: RedisUrl = "",
    out: Annotated[Path | None, typer.Option(help="results directory; default "
                                                  "loadtest/results/<time>-connections")] = None,
) -> None:
    """N concurrent keep-alive connections through the gateway at an open-loop rate: errors by kind,
    latency from the scheduled send time, CPU ms per request per process."""
    from loadtest.connections import connections_mode

    try:
        connections_mode(connections=connections, rate_fraction=rate_fraction, seconds=seconds, users=users,
                         capacity=capacity, capacity_connections=capacity_connections,
                         capacity_seconds=capacity_seconds, open_rate=open_rate, timeout=timeout,
                         database_url=database_url, redis_url=redis_url,
                         out_dir=out or results_dir(label="connections"))
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command("burst", short_help="A login burst on auth's real argon2 defaults.")
def burst_command(
    users: Annotated[int, typer.Option(min=1, max=5000, help="users registering and then logging in")] = 200,
    rate: Annotated[float, typer.Option(min=0.1, max=1000, help="new users per second (open loop)")] = 50,
    retry: Annotated[bool, typer.Option(help="clients honour Retry-After on 503 and try again")] = False,
    max_retries: Annotated[int, typer.Option(min=0, max=20, help="retries per request with --retry")] = 5,
    database_url: DatabaseUrl = "",
    redis_url: RedisUrl = "",
    out: Annotated[Path | None, typer.Option(help="results directory; default loadtest/results/<time>-burst")] = None,
) -> None:
    """A login burst through the gateway on auth's real argon2 defaults: per endpoint 2xx, 503 +
    Retry-After, 504, other errors, latency; the breaker and a normal login afterwards."""
    from loadtest.burst import burst_mode

    try:
        burst_mode(users=users, rate=rate, retry=retry, max_retries=max_retries, database_url=database_url,
                   redis_url=redis_url, out_dir=out or results_dir(label="burst"))
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command("scale", short_help="Latency and CPU per request as the data grows.")
def scale_command(
    sizes: Annotated[str, typer.Option(help="comma-separated row counts, smallest first")] = "10000,1000000",
    users: Annotated[int, typer.Option(min=1, max=10_000_000, help="owners the seeded rows spread over")] = 100_000,
    measured_users: Annotated[int, typer.Option(min=1, max=200, help="registered users whose tokens the "
                                                                      "measurements use")] = 10,
    connections: Annotated[int, typer.Option(min=1, max=1024, help="wrk connections per run")] = 16,
    seconds: Annotated[int, typer.Option(min=1, max=60, help="measured seconds per target and size")] = 5,
    warmup: Annotated[int, typer.Option(min=0, max=30, help="warm-up seconds per target and size")] = 2,
    database_url: DatabaseUrl = "",
    redis_url: RedisUrl = "",
    out: Annotated[Path | None, typer.Option(help="results directory; default loadtest/results/<time>-scale")] = None,
) -> None:
    """List (cache hit/miss), create and recommendations at growing data sizes: P50/P99 and CPU ms per
    request per process, side by side."""
    from loadtest.scale import scale_mode

    try:
        parsed = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter("--sizes must be comma-separated integers") from None
    if not parsed or min(parsed) < 0 or max(parsed) > 20_000_000:
        raise typer.BadParameter("--sizes must be between 0 and 20,000,000")
    try:
        scale_mode(sizes=parsed, owners=users, users=measured_users, connections=connections, seconds=seconds,
                   warmup_seconds=warmup, database_url=database_url, redis_url=redis_url,
                   out_dir=out or results_dir(label="scale"))
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
