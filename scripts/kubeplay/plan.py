"""A rendered chart, translated into what podman 4.3's `kube play` can run (pure, no podman).

`podman kube play` takes Pods, Deployments, ConfigMaps and PersistentVolumeClaims; the
rest of a cluster is emulated here, each gap named in :data:`GAPS` (README, "Run the
chart's pods here"):

* **Services**: a ClusterIP Service becomes a pod of socat forwarders (one container per
  port, standing in for kube-proxy) with its own address; a headless Service resolves
  straight to its pod's address. Every pod gets `hostAliases` for every Service under the
  names cluster DNS gives it (`name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`).
* **Secrets** become podman secrets (what `secretKeyRef` reads in kube play); keys are
  looked up by podman itself, so a wrong key fails the play as it fails a kubelet.
* **StatefulSets** become Deployments with their volumeClaimTemplates as PVCs
  (`<claim>-<statefulset>-0`, as the StatefulSet controller names them).
* Pods get static addresses on a private network, so Service addresses are known before
  anything starts.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

#: Kinds kube play does not run, and what stands in for them (or why nothing needs to).
DROPPED_KINDS = {
    "ServiceAccount": "pods run without a Kubernetes API; automountServiceAccountToken is false anyway",
    "NetworkPolicy": "not enforced: every pod on the play network reaches every other",
    "HorizontalPodAutoscaler": "no metrics API; one pod per workload",
    "PodDisruptionBudget": "no evictions happen here",
    "Ingress": "the gateway's Service is published on 127.0.0.1 instead",
    "HTTPRoute": "the gateway's Service is published on 127.0.0.1 instead",
    "ServiceMonitor": "no Prometheus Operator",
    "Role": "no Kubernetes API",
    "RoleBinding": "no Kubernetes API",
}

#: What podman cannot do as a cluster would, emulated or left out, by topic (`python -m scripts.kubeplay gaps`;
#: README's "The chart's pods, run here" has one bullet per topic, a test keeps them equal).
GAPS = {
    "Services": "socat forwarders at fixed addresses stand in for kube-proxy; a headless Service resolves to "
                "its pod; one pod each, so no load balancing",
    "cluster DNS": "every Service name (name, name.ns, name.ns.svc, name.ns.svc.cluster.local) is a "
                   "hostAliases entry in every pod",
    "Ports": "containerPorts are not published (podman 4.3 would bind each on the host's 0.0.0.0); named ports "
             "are resolved into the probes, and only the gateway's Service is bound, on 127.0.0.1",
    "Workloads": "StatefulSets run as Deployments, their volumeClaimTemplates as podman volumes; one pod per "
                 "Deployment: no rolling updates, HPA or PDB",
    "Restarts and start order": "restartPolicy Always runs as OnFailure (podman 4.3 restarts a finished init "
                                "container forever); an init container runs once, not retried, so pods with "
                                "init containers start after the others are ready",
    "emptyDir": "a podman volume of the pod's own, owned by its runAsUser/fsGroup (podman 4.3 would share one "
                "named volume across all pods)",
    "Probes": "kubeplay runs every startup, readiness and liveness probe itself (podman exec) until it passes "
              "once; nothing probes afterwards (podman's healthchecks need systemd timers)",
    "Not played": "NetworkPolicy, ServiceAccounts, RBAC, Ingress/HTTPRoute, ServiceMonitor, topology spread, "
                  "preStop hooks",
}

@dataclass
class Workload:
    """One pod to play: its documents (ConfigMaps and PVCs it needs first), address, stage."""

    name: str
    pod_name: str
    ip: str
    documents: list[Obj]
    spec: Obj
    has_init_containers: bool = False
    #: container name -> its probes in the order a kubelet starts them (startup, readiness,
    #: liveness), taken out of the played spec: kubeplay runs them (see _take_probes).
    probes: dict[str, list[Obj]] = field(default_factory=dict)

    def container(self, name: str) -> str:
        """podman's name for the pod's container ``name``."""
        return f"{self.pod_name}-{name}"


@dataclass
class Plan:
    namespace: str
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)
    proxies: list[Workload] = field(default_factory=list)
    tests: list[Workload] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    #: Service name -> the address its clients reach (proxy or pod).
    service_ips: dict[str, str] = field(default_factory=dict)


class PlanError(Exception):
    """The render cannot be played: a selector matches nothing, a port name is unknown..."""


def build(
    objects: list[Obj],
    *,
    subnet: str,
    proxy_image: str,
    publish: tuple[str, str, int] | None = None,
) -> Plan:
    """Translate rendered objects into a :class:`Plan` on ``subnet`` (a /24 or larger).

    ``publish`` = (Service name, port name, host port): that Service port is also bound on
    127.0.0.1:<host port> (what `kubectl port-forward svc/...` gives on a cluster).
    """
    namespace = next((o["metadata"].get("namespace") for o in objects if o["metadata"].get("namespace")), "default")
    plan = Plan(namespace=namespace)
    hosts = ipaddress.ip_network(subnet).hosts()
    for _ in range(9):  # .1 is the network's gateway; leave a few for podman itself
        next(hosts)

    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    services: list[Obj] = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Secret":
            plan.secrets[name] = _secret_data(obj)
        elif kind == "Service":
            services.append(obj)
        elif kind in ("Deployment", "StatefulSet"):
            plan.workloads.append(_workload(obj, str(next(hosts)), config_maps, plan))
        elif _is_helm_test(obj):
            pass  # after the workloads: test pods take addresses last
        elif kind in DROPPED_KINDS:
            plan.dropped.append(f"{kind}/{name}: {DROPPED_KINDS[kind]}")
        elif kind != "ConfigMap":
            raise PlanError(f"{kind}/{name}: no podman equivalent known; add it to scripts/kubeplay/plan.py")

    aliases: list[Obj] = []
    for service in services:
        name = service["metadata"]["name"]
        target = _selected(service, plan.workloads)
        if service["spec"].get("clusterIP") == "None":
            ip = target.ip
        else:
            proxy = _proxy(service, target, str(next(hosts)), proxy_image, publish)
            plan.proxies.append(proxy)
            ip = proxy.ip
        plan.service_ips[name] = ip
        aliases.append({"ip": ip, "hostnames": _dns_names(name, namespace)})

    for obj in filter(_is_helm_test, objects):
        name = obj["metadata"]["name"]
        spec = copy.deepcopy(obj["spec"])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _pod_metadata(obj["metadata"]), "spec": spec}
        documents = _pod_documents(spec, name, config_maps, plan)
        plan.tests.append(Workload(name, name, str(next(hosts)), [*documents, pod], spec))

    for workload in (*plan.workloads, *plan.tests):
        workload.spec["hostAliases"] = aliases
        workload.probes = _take_probes(workload.spec)
    return plan


def _is_helm_test(obj: Obj) -> bool:
    return bool(obj["kind"] == "Pod" and obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "test")


def _pvc(name: str, owner: dict[str, Any], spec: Obj) -> Obj:
    """A PersistentVolumeClaim that podman makes a named volume of, owned by ``owner``'s uid/gid."""
    annotations = {f"volume.podman.io/{key}": str(value) for key, value in owner.items()}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "annotations": annotations},
            "spec": spec}


def _secret_data(secret: Obj) -> dict[str, bytes]:
    """data (base64) and stringData merged, as the API server stores them."""
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    data.update({key: str(value).encode() for key, value in (secret.get("stringData") or {}).items()})
    return data


def _pod_metadata(metadata: Obj) -> Obj:
    return {key: metadata[key] for key in ("name", "labels", "annotations") if key in metadata}


def _workload(obj: Obj, ip: str, config_maps: dict[str, Obj], plan: Plan) -> Workload:
    name = obj["metadata"]["name"]
    pod_name = f"{name}-pod-0"  # podman 4.3's kube play names a Deployment's (one) pod so
    spec = copy.deepcopy(obj["spec"]["template"]["spec"])
    # Kubernetes restarts a crashed container (Always); podman 4.3 also restarts a
    # *finished* init container under Always, forever. OnFailure keeps the first.
    spec["restartPolicy"] = "OnFailure"
    claims: list[Obj] = []
    if obj["kind"] == "StatefulSet":
        plan.dropped.append(f"StatefulSet/{name}: played as a Deployment")
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        # fsGroup's effect on a fresh volume: owned by that group.
        owner = {} if fs_group is None else {"uid": fs_group, "gid": fs_group}
        for template in obj["spec"].get("volumeClaimTemplates", []):
            claim = f"{template['metadata']['name']}-{name}-0"
            claims.append(_pvc(claim, owner, template["spec"]))
            spec.setdefault("volumes", []).append(
                {"name": template["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
            plan.volumes.append(claim)
    documents = [*_pod_documents(spec, pod_name, config_maps, plan), *claims]
    template_metadata = obj["spec"]["template"].get("metadata", {})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": obj["metadata"].get("labels", {})},
        "spec": {
            "replicas": 1,
            "selector": obj["spec"]["selector"],
            "template": {"metadata": _pod_metadata({**template_metadata, "name": name}), "spec": spec},
        },
    }
    documents.append(deployment)
    return Workload(name, pod_name, ip, documents, spec, bool(spec.get("initContainers")))


def _pod_documents(spec: Obj, pod_name: str, config_maps: dict[str, Obj], plan: Plan) -> list[Obj]:
    """What a pod needs played before it: the ConfigMaps it reads, its emptyDirs as PVCs."""
    used = [config_maps[cm] for cm in sorted(_config_maps_used(spec)) if cm in config_maps]
    return [*used, *_pod_volumes(spec, pod_name, plan)]


def _pod_volumes(spec: Obj, pod_name: str, plan: Plan) -> list[Obj]:
    """emptyDirs as PVCs of the pod's own, and every podman volume the pod makes, recorded.

    podman 4.3 plays an emptyDir as a *named* volume called after the volume ("tmp"), one
    shared by every pod and kept after it. A PVC per pod and volume gives each pod its own,
    created with the pod's user as owner (what the chart's fsGroup and emptyDir's 0777
    give on a cluster), removed by `down`. ConfigMap volumes are named after the ConfigMap.
    """
    security = spec.get("securityContext") or {}
    claims: list[Obj] = []
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            claim = f"{pod_name}-{volume['name']}"
            owner = {key: security[field] for key, field in (("uid", "runAsUser"), ("gid", "fsGroup"))
                     if field in security}
            claims.append(_pvc(claim, owner, {"accessModes": ["ReadWriteOnce"],
                                              "resources": {"requests": {"storage": "64Mi"}}}))
            del volume["emptyDir"]
            volume["persistentVolumeClaim"] = {"claimName": claim}
            plan.volumes.append(claim)
        elif "configMap" in volume:
            plan.volumes.append(volume["configMap"]["name"])
    return claims


def _take_probes(spec: Obj) -> dict[str, list[Obj]]:
    """Drop containerPorts and probes from the played spec; return the probes, ports resolved.

    podman 4.3 publishes every containerPort on the host's 0.0.0.0 (the same port for
    every pod, so the second pod's fails), where Kubernetes publishes none: pods reach each
    other by address, and only the proxy of a published Service binds a host port. It turns
    probes into healthchecks that need systemd timers (none here; removing them then costs
    seconds per container), so kubeplay runs the probes itself, named ports resolved here.
    """
    probes: dict[str, list[Obj]] = {}
    for container in (*spec.get("initContainers", []), *spec.get("containers", [])):
        named = {port["name"]: port["containerPort"] for port in container.pop("ports", []) if "name" in port}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.pop(kind, None)
            if probe is None:
                continue
            action = probe.get("httpGet") or probe.get("tcpSocket")
            if action and isinstance(action["port"], str):
                if action["port"] not in named:
                    raise PlanError(f"container {container['name']}: {kind} names port {action['port']!r}, "
                                    "which it does not declare")
                action["port"] = named[action["port"]]
            probes.setdefault(container["name"], []).append(probe)
    return probes


def _config_maps_used(spec: Obj) -> set[str]:
    names = {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    for container in (*spec.get("initContainers", []), *spec.get("containers", [])):
        names |= {e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e}
        names |= {e["valueFrom"]["configMapKeyRef"]["name"] for e in container.get("env", [])
                  if "configMapKeyRef" in e.get("valueFrom", {})}
    return names


def _selected(service: Obj, workloads: list[Workload]) -> Workload:
    selector = service["spec"].get("selector") or {}
    for workload in workloads:
        labels = next(d for d in workload.documents if d["kind"] == "Deployment")["spec"]["template"]["metadata"].get(
            "labels", {})
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            return workload
    raise PlanError(f"Service/{service['metadata']['name']}: its selector {selector} matches no pod")


def _container_port(workload: Workload, target: int | str) -> int:
    if isinstance(target, int):
        return target
    for container in workload.spec["containers"]:
        for port in container.get("ports", []):
            if port.get("name") == target:
                return int(port["containerPort"])
    raise PlanError(f"{workload.name}: no container port named {target!r}")


def _proxy(service: Obj, target: Workload, ip: str, image: str, publish: tuple[str, str, int] | None) -> Workload:
    name = service["metadata"]["name"]
    containers = []
    for port in service["spec"]["ports"]:
        target_port = _container_port(target, port.get("targetPort", port["port"]))
        container: Obj = {
            "name": port.get("name") or f"port-{port['port']}",
            "image": image,
            "imagePullPolicy": "Never",
            "args": [f"TCP-LISTEN:{port['port']},fork,reuseaddr", f"TCP:{target.ip}:{target_port}"],
            # Root only to bind ports below 1024 (a Service on port 80), nothing else.
            "securityContext": {"runAsUser": 0, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
            "resources": {"limits": {"memory": "32Mi"}},
        }
        if publish and publish[0] == name and publish[1] == port.get("name"):
            container["ports"] = [{"containerPort": port["port"], "hostPort": publish[2], "hostIP": "127.0.0.1"}]
        containers.append(container)
    pod_name = f"svc-{name}"
    spec = {"restartPolicy": "OnFailure", "containers": containers}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name,
                                                          "labels": {"kubeplay/service": name}}, "spec": spec}
    return Workload(name, pod_name, ip, [pod], spec)


def _dns_names(name: str, namespace: str) -> list[str]:
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
