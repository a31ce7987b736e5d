"""Issue 14 item 7: /metrics and the full /health are not on the public port.

Against a real ``flotilla serve`` process with its two listening sockets: the API port
serves the API and the cheap probes only; the metrics port serves the metrics and the
full report, and nothing else. A flood of readiness probes shares one dependency check
per second instead of multiplying them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from services.kit import catalog
from services.kit import health as health_module
from services.kit.health import Health
from services.kit.metrics import ServiceMetrics
from tests.support.error_shape import assert_error_shape
from tests.support.stack import ServiceProcess, lone_service


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # Its upstreams are not there: the full report then has something to call and find down.
    with lone_service(catalog.GATEWAY, tmp_path_factory.mktemp("private")) as process:
        yield process


def test_the_public_port_serves_no_metrics_and_no_full_report(gateway: ServiceProcess) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for private in ("/metrics", "/health"):
            assert_error_shape(client.get(private), 404, "not_found")
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 200
        assert_error_shape(client.get("/api/v1/tasks"), 401, "unauthorized")  # the API itself is here


def test_the_metrics_port_serves_metrics_and_the_full_report_only(gateway: ServiceProcess) -> None:
    with httpx.Client(base_url=gateway.metrics_url, timeout=30) as client:
        assert "flotilla_service_info" in client.get("/metrics").text
        report = client.get("/health").json()
        assert report["status"] == "degraded"  # the upstreams are not there
        assert report["checks"]["tasks"]["status"] == "down"
        assert client.get("/health/ready").status_code == 200
        for public in ("/api/v1/tasks", "/openapi.json", "/docs"):
            assert_error_shape(client.get(public), 404, "not_found")


async def test_a_flood_of_readiness_probes_runs_the_dependency_checks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def database() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)

    health = Health(ServiceMetrics("probe-flood", "0"), retry_after_seconds=1)
    health.add("database", database, critical=True)
    results = await asyncio.gather(*(health.readiness() for _ in range(200)))
    assert calls == 1
    assert all(result["database"]["status"] == "up" for result in results)
    await health.readiness()
    assert calls == 1  # still fresh
    monkeypatch.setattr(health_module, "READY_CACHE_SECONDS", 0.0)
    await health.readiness()
    assert calls == 2  # aged out: checked again
