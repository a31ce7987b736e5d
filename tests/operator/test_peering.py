"""Issue 15.2: more than one replica works: the chart creates the peering objects where
kopf looks, and of two operators exactly one acts until it stops, then the other does.

kopf pauses every operator that shares the highest priority, so replicas (started with
the same arguments) get a random priority each (``__main__.peering_priority``).
"""

from __future__ import annotations

import asyncio

import kmock
import pytest
from flotilla_operator.__main__ import peering_priority
from flotilla_operator.handlers import Context
from flotilla_operator.settings import OperatorSettings

from tests.operator import manifests
from tests.operator.harness import Cluster, EmulatedAPIServer, running_operator
from tests.operator.test_rbac import grants, operator_calls
from tests.support import helm
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

PEERINGS = "kopf.dev/v1/kopfpeerings"
PEERING = "flotilla-operator"


def test_the_chart_creates_the_peering_objects_where_kopf_looks() -> None:
    assert not helm.find_all(helm.render(manifests.CHART, {}), "KopfPeering")
    objects = helm.render(manifests.CHART, {"peering": {"enabled": True}, "replicaCount": 2,
                                            "watchNamespaces": ["team-a", "team-b"]})
    peerings = helm.find_all(objects, "KopfPeering")
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings} == {
        ("team-a", PEERING), ("team-b", PEERING)}
    allowed = {g.namespace for g in grants(objects, "flotilla-flotilla-operator") if g.resource == "kopfpeerings"}
    assert allowed == {"team-a", "team-b"}
    args = helm.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--peering={PEERING}" in args
    assert not any(a.startswith("--priority") for a in args), "a fixed priority ties every replica"
    cluster_wide = helm.render(manifests.CHART, {"peering": {"enabled": True}, "clusterWide": True})
    assert [p["metadata"]["name"] for p in helm.find_all(cluster_wide, "ClusterKopfPeering")] == [PEERING]
    assert not helm.find_all(cluster_wide, "KopfPeering")


def test_replicas_never_tie() -> None:
    assert len({peering_priority() for _ in range(50)}) > 45


def _reconciles(ctx: Context) -> float:
    samples = next(iter(ctx.metrics.reconciles.collect())).samples
    return sum(s.value for s in samples if s.name.endswith("_total"))


async def test_one_of_two_operators_acts_and_the_other_takes_over(
    cluster: Cluster, api_server: EmulatedAPIServer, operator_settings: OperatorSettings, name: str,
) -> None:
    ns = manifests.NAMESPACE
    api_server.resources[PEERINGS] = kmock.ResourceInfo(kind="KopfPeering", namespaced=True,
                                                        verbs={"get", "list", "watch", "create", "patch"})
    await cluster._call("POST", cluster.path(ns, api=PEERINGS),
                        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                         "metadata": {"name": PEERING, "namespace": ns}})

    async def peers(count: int) -> bool:
        obj = await cluster.get(ns, PEERING, api=PEERINGS) or {}
        return len([v for v in (obj.get("status") or {}).values() if v]) == count

    async with running_operator(operator_settings, namespaces=(ns,), peering=PEERING, priority=10) as standby:
        async with running_operator(operator_settings, namespaces=(ns,), peering=PEERING, priority=20) as active:
            await eventually(lambda: peers(2), message="both operators in the peering object")
            await asyncio.sleep(1)  # the standby has seen the other's higher priority
            await cluster.apply(ns, name)
            await cluster.wait_phase(ns, name, "Ready")
            await asyncio.sleep(1.5)  # drift timer ticks too
            assert _reconciles(active) > 0
            assert _reconciles(standby) == 0, "the standby operator acted"
        # The active one stopped (and left the peering object): the standby takes over.
        await eventually(lambda: peers(1), message="the stopped operator left the peering object")
        await cluster.patch_spec(ns, name, {"dashboards": {"slo": {"availability": 99.5}}})
        obj = await cluster.wait_phase(ns, name, "Ready")
        assert obj["metadata"]["generation"] == 2
        assert _reconciles(standby) > 0

    # RBAC for peering, both ways (the chart's rule, rendered with peering on).
    objects = helm.render(manifests.CHART, {"peering": {"enabled": True}}, release=manifests.RELEASE, namespace=ns)
    account = helm.find(objects, "ServiceAccount")["metadata"]["name"]
    granted = {(g.resource, g.verb) for g in grants(objects, account) if g.group == "kopf.dev"}
    used = {(c.resource, c.verb) for c in operator_calls(cluster.server) if c.group == "kopf.dev"}
    assert used == granted
