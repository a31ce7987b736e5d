"""The operator's dashboards and alert rules, evaluated by a real Prometheus that scrapes
the running stack: every expression parses and runs, and every metric it names exists
for that service (no typo'd or never-exported metric names)."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from flotilla_operator import crd, dashboards
from flotilla_operator import spec as specs

from services.kit import catalog
from tests.support.polling import eventually_sync
from tests.support.prometheus import PrometheusServer, promtool_check_rules, running_prometheus
from tests.support.stack import Stack, bearer, gateway, register_and_login

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.redis]

NAMESPACE = "flotilla"
#: Grafana fills $__rate_interval in; anything >= 4 scrape intervals works here.
RATE_INTERVAL = "10s"
#: Every vector selector the generator writes carries label matchers: name{...}.
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
#: (service, metric) pairs a panel may show without data. None: a service's dashboard
#: leaves out the panels of features it does not use (breakers: metric_names.BREAKERS_USED_BY).
UNUSED_FEATURES: set[tuple[str, str]] = set()


def service_spec(service: catalog.ServiceInfo) -> specs.ServiceSpec:
    return specs.parse({
        "apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
        "metadata": {"name": service.name, "namespace": NAMESPACE},
        "spec": {"database": {"enabled": service.has_database}},
    })


def fast_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The generated groups, evaluated every second instead of every 30 s (same rules)."""
    out = copy.deepcopy(groups)
    for group in out:
        group["interval"] = "1s"
    return out


def _traffic(stack: Stack) -> None:
    with gateway(stack) as client:
        auth = bearer(register_and_login(client, f"prom-{uuid.uuid4().hex[:8]}@example.com"))
        user_id = client.get("/api/v1/users/me", headers=auth).json()["id"]
        task = client.post("/api/v1/tasks", json={"title": "observe"}, headers=auth).json()
        nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"  # its own account budget, whatever ran before
        for _ in range(3):
            client.get("/api/v1/tasks", headers=auth)  # miss then hits: cache metrics
            client.get(f"/api/v1/tasks/{task['id']}", headers=auth)
            client.get("/api/v1/users/me", headers=auth)
            client.get("/api/v1/stats/me", headers=auth)
            client.get(f"/api/v1/recommendations/{user_id}", headers=auth)
            client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=auth)  # 404: error metrics
            client.post("/api/v1/auth/login", json={"email": nobody, "password": "x" * 12})  # auth 401
            client.get("/api/v1/tasks")  # anonymous: the gateway's own 401
            client.patch("/api/v1/users/me", json={"display_name": ""}, headers=auth)  # users' 422
            client.get(f"/api/v1/recommendations/{uuid.uuid4()}", headers=auth)  # data's 403
        # a user without tasks gets popular items, from data's cache
        other = bearer(register_and_login(client, f"prom-{uuid.uuid4().hex[:8]}@example.com"))
        other_id = client.get("/api/v1/users/me", headers=other).json()["id"]
        client.get(f"/api/v1/recommendations/{other_id}", headers=other)
        client.get(f"/api/v1/recommendations/{other_id}", headers=other)


def exported_names(stack: Stack, service: catalog.ServiceInfo) -> set[str]:
    text = httpx.get(f"{stack.metrics_url(service)}/metrics", timeout=5).text
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_generated_rules_pass_promtool(tmp_path: Path) -> None:
    groups = [g for s in catalog.SERVICES for g in dashboards.rule_groups(service_spec(s))]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    checked = promtool_check_rules(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    print(f"\n[chaos] promtool check rules: {checked.stdout.strip()}")


def test_every_generated_expression_has_data(calm_stack: Stack) -> None:
    specs_by_job = {s.name: service_spec(s) for s in calm_stack.services}
    groups = [g for spec in specs_by_job.values() for g in dashboards.rule_groups(spec)]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    targets = {s.name: calm_stack.metrics_url(s).removeprefix("http://") for s in calm_stack.services}
    _traffic(calm_stack)
    with running_prometheus(targets, fast_groups(groups)) as prometheus:
        prometheus.wait_all_up()
        eventually_sync(lambda: _has_rates(prometheus), within=60, interval=0.5)
        prometheus.wait_rules_evaluated()
        evaluated, missing, not_exported = 0, [], []
        for job, spec in specs_by_job.items():
            exported = exported_names(calm_stack, catalog.by_name(job))
            for expr in dashboards.all_expressions(spec):
                query = expr.replace(dashboards.RATE, RATE_INTERVAL)
                assert f'job="{job}"' in query, query
                prometheus.query(query)  # raises on a parse or evaluation error
                evaluated += 1
                for name in set(SELECTOR.findall(query)):
                    if name in recorded:
                        continue  # its inputs are checked where the recording rule's own expr is
                    if base_name(name) not in exported:
                        not_exported.append(f"{job}: {name}")
                    if (job, name) in UNUSED_FEATURES:
                        continue
                    if not prometheus.query(f'count({name}{{job="{job}",namespace="{NAMESPACE}"}})'):
                        missing.append(f"{job}: {name}")
        # Every recording rule has a value for every service: zero, not absent, on a healthy
        # one (a 5xx series does not exist before the first 5xx).
        # Not NaN either: an idle window records 0 (a NaN would poison the 30-day average).
        empty_rules = [f"{job}: {rule}" for job in specs_by_job for rule in sorted(recorded)
                       if not (values := [r["value"][1] for r in prometheus.query(
                           f'{rule}{{job="{job}",namespace="{NAMESPACE}"}}')]) or "NaN" in values]
        # Every dashboard query, as Grafana sends it with the variables at their defaults,
        # returns data (NaN only where the panel maps it to "no traffic").
        empty_queries, nan_queries, report = [], [], []
        for job, spec in specs_by_job.items():
            for panel in dashboards.panels(spec):
                for target in panel.get("targets", ()):
                    query = dashboards.resolve(target["expr"], spec).replace(dashboards.RATE, RATE_INTERVAL)
                    result = prometheus.query(query)
                    values = [r["value"][1] for r in result]
                    where = f"{job}: {panel['title']} [{target['legendFormat']}]"
                    report.append(f"{where}: {'data' if values else 'EMPTY'}"
                                  f"{' (NaN)' if 'NaN' in values else ''}")
                    if not values:
                        if not any((job, name) in UNUSED_FEATURES for name in SELECTOR.findall(query)):
                            empty_queries.append(where)
                    elif "NaN" in values and not _maps_nan(panel):
                        nan_queries.append(where)
    print(f"\n[chaos] prometheus: {evaluated} expressions evaluated over {len(specs_by_job)} services; "
          f"metric names without series: {sorted(set(missing)) or 'none'} "
          f"(panels of unused features, metric exported: {len(UNUSED_FEATURES)})")
    assert not not_exported, sorted(set(not_exported))
    assert not missing, sorted(set(missing))
    print("[chaos] dashboard queries:\n  " + "\n  ".join(report))
    assert not empty_rules, "\n".join(empty_rules)
    assert not empty_queries, "\n".join(empty_queries)
    assert not nan_queries, "\n".join(nan_queries)


def _maps_nan(panel: dict[str, Any]) -> bool:
    return any(m.get("options", {}).get("match") == "nan" for m in panel["fieldConfig"]["defaults"]["mappings"])



def _has_rates(prometheus: PrometheusServer) -> bool:
    """Two scrapes after the traffic: rate() has something to work with."""
    result = prometheus.query(f"count(rate(http_requests_total{{namespace=\"{NAMESPACE}\"}}[{RATE_INTERVAL}]))")
    return bool(result) and float(result[0]["value"][1]) > 0
