"""The chart's RBAC is exactly what the operator uses: nothing missing, nothing unused.

The operator runs as the chart installs it by default (one namespace, Roles only) through
a whole lifecycle against kmock; every request it sends is taken from kmock's request
log and matched against the rendered Roles and ClusterRoles bound to its ServiceAccount.
Both directions: a request no rule allows would be a 403 on a real cluster, and a rule
no request needed is a privilege to drop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kmock
import pytest
from flotilla_operator.handlers import ROTATE_ANNOTATION, ROTATED_FOR_ANNOTATION
from flotilla_operator.settings import OperatorSettings

from tests.operator import manifests
from tests.operator.harness import Cluster, running_operator
from tests.support import helm
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NAMESPACE = manifests.NAMESPACE
#: Rules no request exercises because the API server checks them on someone else's
#: behalf: (group, resource, verb) -> why.
CHECKED_BY_ADMISSION = {
    ("flotilla.dev", "servicespecs/finalizers", "update"):
        "OwnerReferencesPermissionEnforcement: children with blockOwnerDeletion need it",
}
_VERBS = {
    kmock.action.LIST: "list", kmock.action.WATCH: "watch", kmock.action.FETCH: "get",
    kmock.action.CREATE: "create", kmock.action.DELETE: "delete",
}


@dataclass(frozen=True)
class Call:
    group: str
    resource: str  # with "/subresource"
    verb: str
    namespace: str | None  # None: cluster-scoped request

    def __str__(self) -> str:
        where = f"in {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {self.group or 'core'}/{self.resource} {where}"


@dataclass(frozen=True)
class Grant:
    group: str
    resource: str
    verb: str
    namespace: str | None  # None: a ClusterRole, valid everywhere

    def allows(self, call: Call) -> bool:
        return ((self.group, self.resource, self.verb) == (call.group, call.resource, call.verb)
                and (self.namespace is None or self.namespace == call.namespace))


def grants(objects: list[dict[str, Any]], service_account: str) -> set[Grant]:
    """Every (group, resource, verb, scope) the ServiceAccount gets from the rendered RBAC."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects
             if o["kind"] in {"Role", "ClusterRole"}}
    result: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in binding["subjects"]):
            continue
        scope = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            assert "resourceNames" not in rule, rule
            assert "nonResourceURLs" not in rule, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        result.add(Grant(group, resource, verb, scope))
    return result


def operator_calls(requests: Iterable[kmock.Request]) -> set[Call]:
    """The operator's own requests (kopf's and its Kube client's) as RBAC sees them.

    Discovery (/api, /apis/...) is not a resource request: every authenticated client may.
    """
    calls = set()
    for request in requests:
        agent = request.headers.get("User-Agent", "")
        if not (agent.startswith("kopf/") or agent == "flotilla-operator") or request.resource is None:
            continue
        if request.action is None:
            continue
        if request.resource.plural is None:  # discovery of a group version
            continue
        method = request.method.value
        verb = {"PATCH": "patch", "PUT": "update"}.get(method) or _VERBS[request.action]
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        calls.add(Call(request.resource.group, resource, verb, request.namespace))
    return calls


def _render_default(values: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], str]:
    objects = helm.render(manifests.CHART, values or {}, release=manifests.RELEASE, namespace=NAMESPACE)
    account = helm.find(objects, "ServiceAccount")["metadata"]["name"]
    return objects, account


def test_default_install_holds_nothing_cluster_wide() -> None:
    objects, account = _render_default()
    assert not helm.find_all(objects, "ClusterRole")
    assert not helm.find_all(objects, "ClusterRoleBinding")
    assert {g.namespace for g in grants(objects, account)} == {NAMESPACE}
    args = helm.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={NAMESPACE}" in args
    assert "--all-namespaces" not in args


def test_cluster_wide_only_as_an_explicit_opt_in() -> None:
    objects = helm.render(manifests.CHART, {"clusterWide": True})
    assert {g.namespace for g in grants(objects, "flotilla-flotilla-operator")} == {None}
    assert "--all-namespaces" in helm.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    with pytest.raises(Exception, match="watchNamespaces"):
        helm.render(manifests.CHART, {"clusterWide": True, "watchNamespaces": ["a"]})
    listed = helm.render(manifests.CHART, {"watchNamespaces": ["team-a", "team-b"]})
    assert {g.namespace for g in grants(listed, "flotilla-flotilla-operator")} == {"team-a", "team-b"}


@pytest.mark.parametrize("cluster_wide", [False, True], ids=["namespaced", "cluster-wide"])
async def test_rbac_equals_the_calls_of_a_whole_lifecycle(cluster: Cluster, operator_settings: OperatorSettings,
                                                          name: str, cluster_wide: bool) -> None:
    objects, account = _render_default({"clusterWide": cluster_wide})
    granted = grants(objects, account)
    ns = NAMESPACE
    async with running_operator(operator_settings, namespaces=() if cluster_wide else (ns,)):
        # Create: database, Redis, dashboards, status, Events.
        await cluster.apply(ns, name, {"database": {"deletionPolicy": "Delete"}})
        await cluster.wait_phase(ns, name, "Ready")
        # Rotate: the Secrets are patched, the Deployment reading them restarted.
        await cluster.create_deployment(ns, f"{name}-app", f"{name}-database")
        await cluster.annotate(ns, name, {ROTATE_ANNOTATION: "now"})

        async def rotated() -> bool:
            secret = await cluster.get(ns, f"{name}-database", api="v1/secrets")
            return (secret or {}).get("metadata", {}).get("annotations", {}).get(ROTATED_FOR_ANNOTATION) == "now"
        await eventually(rotated, message="rotation applied")
        # Drift: a deleted Secret comes back.
        await cluster.delete(ns, f"{name}-redis", api="v1/secrets")

        async def restored() -> bool:
            return await cluster.secret(ns, f"{name}-redis") is not None
        await eventually(restored, message="Secret restored")
        # Changed: the dashboard, the rules and the monitor's labels are patched.
        await cluster.patch_spec(ns, name, {"dashboards": {"slo": {"availability": 99.5},
                                                           "monitoringLabels": {"team": "a"}}})
        await cluster.wait_phase(ns, name, "Ready")
        # Parts switched off: their objects are deleted.
        await cluster.patch_spec(ns, name, {"dashboards": {"enabled": False}, "redis": {"enabled": False}})
        await cluster.wait_phase(ns, name, "Ready")
        assert await cluster.get(ns, f"{name}-dashboard", api="v1/configmaps") is None
        # Refused (a label key only the operator checks): a Warning Event. Normal Events
        # are not posted at all (settings.posting.level is WARNING).
        await cluster.apply(ns, f"{name}-bad", {"dashboards": {"monitoringLabels": {"bad key": "x"}}})
        # Deleted: the finalizer is released.
        await cluster.delete(ns, name)
        await cluster.wait_gone(ns, name)

        async def events_posted() -> bool:  # kopf posts Events from a background task
            return Call("", "events", "create", ns) in operator_calls(cluster.server)
        await eventually(events_posted, message="kopf posted its Events")
    calls = operator_calls(cluster.server)
    assert calls, "no request of the operator was recorded"
    missing = sorted(str(c) for c in calls if not any(g.allows(c) for g in granted))
    unused = sorted(f"{g.verb} {g.group or 'core'}/{g.resource} in {g.namespace}" for g in granted
                    if not any(g.allows(c) for c in calls)
                    and (g.group, g.resource, g.verb) not in CHECKED_BY_ADMISSION)
    assert missing == [], f"the operator needs, and RBAC does not grant: {missing}"
    assert unused == [], f"RBAC grants, and the operator never used: {unused}"


def test_the_comparison_sees_both_directions() -> None:
    granted = {Grant("", "secrets", "get", NAMESPACE), Grant("", "secrets", "list", None)}
    inside = Call("", "secrets", "get", NAMESPACE)
    elsewhere = Call("", "secrets", "get", "other")
    assert any(g.allows(inside) for g in granted)
    assert not any(g.allows(elsewhere) for g in granted)
    assert Grant("", "secrets", "list", None).allows(Call("", "secrets", "list", "any"))
