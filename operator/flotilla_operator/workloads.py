"""Rolling the Deployments that read a credential Secret, and knowing when they have rolled.

Pods read a Secret's values once, at start (environment variables), so a Secret that
switched credentials must be followed by a rollout of every workload that uses it before
the previous credentials stop working. The operator finds the Deployments in the Secret's
namespace whose pod template references it (``env[].valueFrom.secretKeyRef``,
``envFrom[].secretRef``, a ``secret`` or projected volume), patches the annotation
``credentials.flotilla.dev/<secret>: <version>`` into their pod template (which is what
``kubectl rollout restart`` does with its own annotation), and reports those whose rollout
has not finished. One annotation per Secret, so the database and Redis Secrets of one
ServiceSpec, rotated together, never undo each other's value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flotilla_operator.kube import Kube

ANNOTATION_PREFIX: Final = "credentials.flotilla.dev/"
DEPLOYMENTS_API: Final = "apps/v1"


@dataclass
class Rollout:
    restarted: list[str] = field(default_factory=list)
    #: Deployments referencing the Secret that still run pods from before the switch.
    pending: list[str] = field(default_factory=list)


def annotation(secret: str) -> str:
    return ANNOTATION_PREFIX + secret


def version(data: Mapping[str, str]) -> str:
    """A token for the Secret's content: equal for equal credentials, reveals nothing."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(f"{key}\0{data[key]}\0".encode())
    return digest.hexdigest()[:16]


def _secret_names(pod: Mapping[str, Any]) -> Iterator[str]:
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                yield ref["name"]
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name"):
                yield source["secretRef"]["name"]
    for volume in pod.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName"):
            yield volume["secret"]["secretName"]
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name"):
                yield source["secret"]["name"]


def references(deployment: Mapping[str, Any], secret: str) -> bool:
    pod = deployment.get("spec", {}).get("template", {}).get("spec") or {}
    return secret in set(_secret_names(pod))


def rolled_out(deployment: Mapping[str, Any]) -> bool:
    """The controller has seen the latest template and no pod of an older one is left."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation", 0)
    wanted = spec.get("replicas", 1)
    return bool(status.get("observedGeneration", 0) >= generation
            and status.get("updatedReplicas", 0) == wanted
            and status.get("replicas", 0) == status.get("updatedReplicas", 0))


async def roll(kube: Kube, namespace: str, secret: str, token: str) -> Rollout:
    """Make every Deployment using ``secret`` run pods started after it held ``token``."""
    result = Rollout()
    key = annotation(secret)
    path = f"/apis/{DEPLOYMENTS_API}/namespaces/{namespace}/deployments"
    for deployment in await kube.list_items(path):
        if not references(deployment, secret):
            continue
        name = deployment["metadata"]["name"]
        template_meta = deployment.get("spec", {}).get("template", {}).get("metadata") or {}
        if (template_meta.get("annotations") or {}).get(key) != token:
            patch = {"spec": {"template": {"metadata": {"annotations": {key: token}}}}}
            if await kube.patch(f"{path}/{name}", patch):
                result.restarted.append(name)
                result.pending.append(name)
        elif not rolled_out(deployment):
            result.pending.append(name)
    return result
