"""`python -m loadtest scale`: cost per request as the data grows, side by side.

    python -m loadtest scale                             # 10,000 then 1,000,000 rows over 100,000 users
    python -m loadtest scale --sizes 10000,100000,1000000 --seconds 5

On one private stack (real PostgreSQL/Redis): the tasks table and the data service's
task snapshots are seeded in bulk (``seeding``: generate_series inside PostgreSQL, not
through the API) to each size in turn (growing by top-up), over ``--users`` owners. At
each size, short wrk runs through the gateway (``bench``'s runner: warm-up, then CPU
from /proc per process over the measured window):

- list, cache hits: ``GET /api/v1/tasks``, registered users' tokens in turn (a full page each);
- list, cache misses: ``GET /api/v1/tasks`` with a keyset cursor never seen before (reads PostgreSQL);
- create: ``POST /api/v1/tasks``, the same users in turn;
- recommendations: ``GET /api/v1/recommendations/{user_id}`` of users with no tasks
  (popular titles, which the data service recomputes in the background).

Prints P50/P99, RPS, errors and CPU ms per request per process for every size side by
side; the issue wants them flat between 10 K and 1 M rows.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest import report
from loadtest.accounts import TASKS_PATH, bench_users
from loadtest.baselines import database_dsn
from loadtest.bench import BENCH_STACK_ENV, Runner, _server_pids
from loadtest.generators import METHODS_ENV, TOKENS_FILE_ENV, TOKENS_SCRIPT, UNCACHED_SCRIPT, Result, ensure_wrk
from loadtest.report import fmt_latency as _fmt
from loadtest.seeding import seed
from loadtest.stack import running_stack, servers
from loadtest.tokens import tokens_file
from services.kit import catalog

RECOMMENDATIONS_PATH = "/api/v1/recommendations/{user}"
TARGETS = ("list (cache hit)", "list (cache miss)", "create", "recommendations")


def scale_mode(
    *,
    sizes: list[int],
    owners: int = 100_000,
    users: int = 10,
    connections: int = 16,
    seconds: int = 5,
    warmup_seconds: int = 2,
    database_url: str = "",
    redis_url: str = "",
    out_dir: Path,
) -> dict[str, Any]:
    wrk = ensure_wrk()
    if wrk is None:
        raise RuntimeError("the scale mode needs wrk (apt-get install wrk)")
    sizes = sorted(set(sizes))
    runner = Runner(wrk, connections, seconds, warmup_seconds, out_dir)
    by_size: dict[int, list[Result]] = {}
    seeding: dict[int, dict[str, Any]] = {}
    with ExitStack() as stack:
        found = stack.enter_context(servers(database_url, redis_url))
        runner.pg_dsn = database_dsn(found.database_url, "postgres")
        private, _ = stack.enter_context(running_stack(
            out_dir / "stack", database_url=found.database_url, redis_url=found.redis_url, extra_env=BENCH_STACK_ENV))
        gateway, tasks = private.service(catalog.GATEWAY.name), private.service(catalog.TASKS.name)
        if gateway is None or tasks is None or private.service(catalog.DATA.name) is None:
            raise RuntimeError("the scale mode needs the gateway, tasks and data")
        gateway_url, tasks_url = private.url(gateway), private.url(tasks)
        listers = bench_users(private.entry_url, tasks_url, users)
        idle = bench_users(private.entry_url, tasks_url, users, rows=0)  # no open tasks: popular titles
        pids = {**private.pids(), **_server_pids(found.database_url, found.redis_url)}
        list_file = stack.enter_context(tokens_file(listers))
        idle_file = stack.enter_context(tokens_file(idle, with_subject=True))
        seeded = 0
        for size in sizes:
            counts, took = seed(found.database_url, start=seeded, stop=size, owners=owners)
            seeded = max(seeded, size)
            seeding[size] = {"seconds": round(took, 2), "rows": counts}
            print(f"size {size:,}: seeded in {took:.1f}s, rows now {counts}", flush=True)
            url = f"{gateway_url}{TASKS_PATH}"
            by_size[size] = [
                runner.measure(f"{size:,} {TARGETS[0]}", url, pids, script=TOKENS_SCRIPT,
                               env={TOKENS_FILE_ENV: str(list_file)}),
                runner.measure(f"{size:,} {TARGETS[1]}", url, pids, token=listers[0], script=UNCACHED_SCRIPT),
                runner.measure(f"{size:,} {TARGETS[2]}", url, pids, script=TOKENS_SCRIPT,
                               env={TOKENS_FILE_ENV: str(list_file), METHODS_ENV: "POST"}),
                runner.measure(f"{size:,} {TARGETS[3]}", f"{gateway_url}/api/v1/recommendations/x", pids,
                               script=TOKENS_SCRIPT,
                               env={TOKENS_FILE_ENV: str(idle_file), "FLOTILLA_BENCH_PATH": RECOMMENDATIONS_PATH}),
            ]
    summary = {
        "machine": report.machine(), "owners": owners, "users": users, "connections": connections,
        "seconds": seconds, "warmup_seconds": warmup_seconds, "seeding": {str(k): v for k, v in seeding.items()},
        "results": {str(size): [{**asdict(r), "target": target, "cpu_total_ms": r.cpu_total_ms}
                                for target, r in zip(TARGETS, results, strict=True)]
                    for size, results in by_size.items()},
    }
    report.write_json(out_dir / "scale.json", summary)
    print_summary(summary)
    print(f"\nresults: {out_dir / 'scale.json'}")
    return summary



def print_summary(summary: dict[str, Any]) -> None:
    sizes = list(summary["results"])
    by_target = {t: {s: next(r for r in summary["results"][s] if r["target"] == t) for s in sizes} for t in TARGETS}
    print()
    headers = ["target"]
    for s in sizes:
        headers += [f"{int(s):,}: P50 ms", "P99 ms", "RPS", "errors", "CPU ms/req"]
    print(report.table(headers, [
        (t, *(cell for s in sizes for cell in (
            _fmt(row[s]["p50_ms"]), _fmt(row[s]["p99_ms"]), _fmt(row[s]["rps"]), row[s]["errors"],
            report.fmt_ms(row[s]["cpu_total_ms"]))))
        for t, row in by_target.items()]))
    print()
    print("CPU milliseconds per request, per process, by size:")
    names = report.ordered_processes({n for s in sizes for r in summary["results"][s] for n in r["cpu_ms"]})
    print(report.table(("target", "rows", *names, "total"), [
        (t if i == 0 else "", f"{int(s):,}", *(report.fmt_ms(row[s]["cpu_ms"].get(n)) for n in names),
         report.fmt_ms(row[s]["cpu_total_ms"]))
        for t, row in by_target.items() for i, s in enumerate(sizes)]))
    print()
    print("seeding: " + "; ".join(f"{int(s):,} rows in {v['seconds']}s" for s, v in summary["seeding"].items()))
