"""The dashboards part: a Grafana dashboard ConfigMap, a ServiceMonitor and a PrometheusRule."""

from __future__ import annotations

from typing import Any, Final

import kopf

from flotilla_operator import dashboards, naming
from flotilla_operator.kube import object_path
from flotilla_operator.parts.base import Context, Outcome
from flotilla_operator.spec import ServiceSpec

MONITORING_API: Final = "monitoring.coreos.com/v1"


class DashboardsPart:
    name = "dashboards"
    label = "dashboards"
    condition = "DashboardsReady"
    order = 30
    releases_on_delete = False  # lives in Kubernetes only: owner references suffice
    rotates = False

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome:
        monitoring = ctx.settings.monitoring()
        configmap = dashboards.dashboard_configmap(spec, monitoring)
        kopf.adopt(configmap, owner=body)
        actions = []
        if (applied := await ctx.kube.apply(configmap, "configmaps")) != "unchanged":
            actions.append(f"{applied} dashboard ConfigMap {configmap['metadata']['name']}")
        fields: dict[str, Any] = {"configMapName": configmap["metadata"]["name"]}
        if not await ctx.kube.serves(MONITORING_API, {"servicemonitors", "prometheusrules"}):
            return Outcome(
                reason="MonitoringCRDsMissing",
                message=(f"dashboard ConfigMap {fields['configMapName']} is in place, but the API does not serve "
                         f"{MONITORING_API} servicemonitors/prometheusrules (install the Prometheus Operator "
                         "CRDs, or set spec.dashboards.enabled=false); re-checked by the drift timer"),
                actions=actions, fields=fields, ready=False,
            )
        for obj, plural in ((dashboards.service_monitor(spec, monitoring), "servicemonitors"),
                            (dashboards.prometheus_rule(spec, monitoring), "prometheusrules")):
            kopf.adopt(obj, owner=body)
            if (applied := await ctx.kube.apply(obj, plural)) != "unchanged":
                actions.append(f"{applied} {obj['kind']} {obj['metadata']['name']}")
        fields |= {"serviceMonitorName": spec.name, "prometheusRuleName": naming.prometheus_rule_name(spec.name)}
        return Outcome(
            reason="Provisioned",
            message=f"dashboard, ServiceMonitor and SLO rules ({spec.dashboards.availability:g}% available, "
                    f"P95 < {spec.dashboards.latency_p95_ms}ms)",
            actions=actions, fields=fields,
        )

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]:
        if deleting or not body.status.get("dashboards"):
            return []  # owner references take the children with the ServiceSpec
        actions = []
        targets = [("v1", "configmaps", naming.dashboard_configmap_name(spec.name))]
        if await ctx.kube.serves(MONITORING_API, {"servicemonitors", "prometheusrules"}):
            targets += [(MONITORING_API, "servicemonitors", spec.name),
                        (MONITORING_API, "prometheusrules", naming.prometheus_rule_name(spec.name))]
        for api_version, plural, name in targets:
            if await ctx.kube.delete(object_path(api_version, plural, spec.namespace, name)):
                actions.append(f"deleted {plural} {name}")
        return actions


PART = DashboardsPart()
