"""The rendered chart, run for real (issue 16 item 2): `python -m scripts.kubeplay up` under pytest.

The umbrella chart with values-dev.yaml, rendered by Helm's engine, runs as containers with
`podman kube play`: the five service images, PostgreSQL and Redis stand-ins built from
Debian packages, init-container migrations, Secrets read through secretKeyRef, read-only
root filesystems with the chart's emptyDir volumes, every startup/readiness probe, and the
chart's own `helm test` pods. Then the reference workload (register, log in, create and
list tasks) goes through the gateway's Service, published on 127.0.0.1.

It skips, saying why, only where this machine cannot run podman (see test_images.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scripts.kubeplay import plan as planning
from scripts.kubeplay.podman import Podman, podman_env
from tests.support.polling import eventually_sync
from tests.support.stack import bearer, register_and_login

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "kubeplay-test"

def _kubeplay(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nice", "-n", "10", sys.executable, "-m", "scripts.kubeplay", *args, "--release", RELEASE],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
                          env={**os.environ})


@pytest.fixture(scope="module")
def gateway_url(podman_can_run: None) -> Iterator[str]:
    result = _kubeplay("up", timeout=2400)
    try:
        assert result.returncode == 0, f"kubeplay up failed:\n{result.stderr[-6000:]}"
        yield result.stdout.strip().splitlines()[-1]
    finally:
        _kubeplay("down", timeout=300)


@pytest.mark.images
@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_the_reference_workload_answers_through_the_gateway_container(gateway_url):
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        tokens = register_and_login(client, f"kubeplay-{uuid.uuid4().hex[:12]}@example.com")
        auth = bearer(tokens)
        titles = [f"kube play {n}" for n in range(3)]
        for title in titles:
            created = client.post("/api/v1/tasks", json={"title": title, "priority": "high"}, headers=auth)
            assert created.status_code == 201, created.text
        for _ in range(2):  # the second listing may come from Redis: same answer
            listing = client.get("/api/v1/tasks", headers=auth)
            assert listing.status_code == 200, listing.text
            assert sorted(item["title"] for item in listing.json()["data"]) == titles
        assert client.get("/api/v1/users/me", headers=auth).status_code == 200
        assert client.get("/api/v1/tasks").status_code == 401
        # tasks -> outbox -> the dev Redis's stream -> data's consumer -> data's database.
        def all_counted() -> dict[str, Any] | None:
            stats: dict[str, Any] = client.get("/api/v1/stats/me", headers=auth).json()
            return stats if stats.get("created") == 3 else None

        stats = eventually_sync(all_counted, message="the three task events counted by data")
        assert stats["by_priority"]["high"] == 3


@pytest.mark.images
@pytest.mark.slow
def test_pods_run_with_the_charts_security_context_and_serve_metrics_on_the_service_port(gateway_url):
    podman = Podman(podman_env(), Path("/nonexistent"))
    container = f"{RELEASE}-tasks-pod-0-tasks"
    user, read_only, memory = podman("inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} "
                                     "{{.HostConfig.Memory}}", container).stdout.decode().split()
    limit = yaml.safe_load((ROOT / "charts" / "service" / "values.yaml").read_text())["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    assert (user, read_only, memory) == ("10001:10001", "true", str(int(limit[:-2]) * 1024 * 1024))
    assert podman("exec", container, "touch", "/opt/venv/written", check=False).returncode != 0
    # What the ServiceMonitor scrapes: the Service's metrics port, by its cluster name.
    scrape = podman("exec", f"{RELEASE}-gateway-pod-0-gateway", "python", "-c",
                    f"import urllib.request; print(urllib.request.urlopen('http://{RELEASE}-tasks.flotilla.svc:9000"
                    "/metrics', timeout=10).read().decode())")
    assert b"http_requests_total" in scrape.stdout


def test_every_service_of_the_render_is_reachable_by_its_cluster_names():
    """The plan alone (no podman): Services resolve everywhere, ports translate as kube-proxy's."""
    from scripts.kubeplay.__main__ import render

    objects = render("flotilla", "flotilla", "dev", {"postgresql": "pg", "redis": "redis"})
    plan = planning.build(objects, subnet="10.89.5.0/24", proxy_image="proxy",
                          publish=("flotilla-gateway", "http", 18000))
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert set(plan.service_ips) == set(services)
    for workload in (*plan.workloads, *plan.tests):
        names = {name for alias in workload.spec["hostAliases"] for name in alias["hostnames"]}
        assert {f"{service}.flotilla.svc.cluster.local" for service in services} <= names
    tasks = next(proxy for proxy in plan.proxies if proxy.name == "flotilla-tasks")
    target = next(w for w in plan.workloads if w.name == "flotilla-tasks")
    assert tasks.spec["containers"][0]["args"] == ["TCP-LISTEN:80,fork,reuseaddr", f"TCP:{target.ip}:8000"]
    gateway = next(proxy for proxy in plan.proxies if proxy.name == "flotilla-gateway")
    assert gateway.spec["containers"][0]["ports"] == [{"containerPort": 80, "hostPort": 18000, "hostIP": "127.0.0.1"}]
    # The dev PostgreSQL is headless: its name resolves to the pod, and its volume is a PVC.
    postgres = next(w for w in plan.workloads if w.name == "flotilla-postgresql")
    assert plan.service_ips["flotilla-postgresql"] == postgres.ip
    assert "data-flotilla-postgresql-0" in plan.volumes
    assert len({w.ip for w in (*plan.workloads, *plan.proxies, *plan.tests)}) == \
        len(plan.workloads) + len(plan.proxies) + len(plan.tests)
