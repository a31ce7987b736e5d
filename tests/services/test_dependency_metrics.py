"""No exported metric without samples: ``flotilla_dependency_up`` has one per dependency
although nobody calls /health (probes call /health/ready, and the gateway has no critical
check), so its dashboard panel and any alert on it work (issue 17, item 2)."""

from __future__ import annotations

from services.gateway.app import create_app
from services.kit import catalog
from services.kit import metric_names as names
from tests.services.conftest import running
from tests.services.gateway_support import gateway_settings
from tests.support.polling import eventually


async def test_gateway_reports_every_upstream_without_a_health_call() -> None:
    app = create_app(gateway_settings())  # every upstream unreachable

    def samples() -> dict[str, float]:
        return {s.labels["dependency"]: s.value for metric in app.state.metrics.registry.collect()
                if metric.name == names.DEPENDENCY_UP for s in metric.samples}

    upstreams = {b.name for b in catalog.BACKENDS}

    def every_upstream() -> dict[str, float] | None:
        got = samples()
        return got if upstreams <= set(got) else None

    async with running(app):
        seen = await eventually(every_upstream, within=10)
    assert all(seen[name] == 0 for name in upstreams), seen
