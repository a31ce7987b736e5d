"""Fixtures: kmock as the API server, a kubeconfig pointing at it, the running operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from flotilla_operator.handlers import Context
from flotilla_operator.settings import OperatorSettings

from tests.operator.harness import (
    Cluster,
    EmulatedAPIServer,
    declare_resources,
    running_operator,
    unique_name,
    write_kubeconfig,
)
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def monitoring_crds() -> bool:
    """Whether the emulated cluster serves the Prometheus Operator's CRDs."""
    return True


@pytest.fixture
async def api_server(monitoring_crds: bool) -> AsyncIterator[EmulatedAPIServer]:
    async with EmulatedAPIServer() as server, kmock.Server(server):
        declare_resources(server, monitoring=monitoring_crds)
        yield server


@pytest.fixture
async def cluster(api_server: EmulatedAPIServer, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(api_server.url))))
    client = Cluster(api_server)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def operator_settings(postgres_server: PostgresServer, redis_server: RedisServer) -> OperatorSettings:
    return OperatorSettings(
        postgres_admin_dsn=postgres_server.dsn("postgres", driver="postgresql"),
        redis_admin_url=redis_server.url,
        drift_interval_seconds=0.5,
        drift_idle_seconds=0.2,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        dependency_timeout_seconds=2.0,
        metrics_port=0,
    )


@pytest.fixture
async def operator(cluster: Cluster, operator_settings: OperatorSettings) -> AsyncIterator[Context]:
    async with running_operator(operator_settings) as ctx:
        yield ctx


@pytest.fixture
def name() -> str:
    return unique_name()


@pytest.fixture
def namespace() -> str:
    return "flotilla"
