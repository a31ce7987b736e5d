"""Every Secret a rendered workload reads exists once the install is done.

A pod whose Secret never appears sits in CreateContainerConfigError for ever, and no
render, lint or schema check notices. So each way of installing Flotilla is rendered as
a whole, and every Secret its workloads reference must be made by one of:

- the install itself (a Secret object in the render),
- the operator, from a ServiceSpec in the same install (``<name>-database`` and
  ``<name>-redis``, named by the operator's own code),
- the user, before installing: only the Secrets listed in ``USER_SECRETS``, each with a
  ``kubectl create secret`` line in the document named there.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_operator import naming, spec

from services.kit import catalog
from tests.charts.conftest import ROOT, UMBRELLA_CHART, dev_values, render
from tests.support import helm

OPERATOR_CHART = ROOT / "charts" / "flotilla-operator"
NAMESPACE = helm.DEFAULT_NAMESPACE

#: Secrets only the user can make (credentials never go through values files or git):
#: name -> the document that tells how.
USER_SECRETS: dict[str, Path] = {
    "flotilla-operator-admin": ROOT / "docs" / "operator.md",
}

Obj = dict[str, Any]
SecretRef = tuple[str, str]  # (namespace, name)


def _kustomize(directory: Path) -> list[Obj]:
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _services_without_servicespecs() -> dict[str, Any]:
    """Umbrella values for ServiceSpecs managed elsewhere (k8s/examples, GitOps)."""
    return {s.name: {"serviceSpec": {"create": False}} for s in catalog.SERVICES}


#: Each way of installing Flotilla, as the objects it ends up applying.
INSTALLS: dict[str, Callable[[], list[Obj]]] = {
    "helm-production": lambda: [
        *helm.render(OPERATOR_CHART, {}, release="flotilla-operator", namespace=NAMESPACE),
        *render(UMBRELLA_CHART),
    ],
    "helm-dev": lambda: render(UMBRELLA_CHART, dev_values()),
    "kustomize-operator-and-examples": lambda: [
        *_kustomize(ROOT / "k8s"),
        *_kustomize(ROOT / "k8s" / "examples"),
        *render(UMBRELLA_CHART, _services_without_servicespecs()),
    ],
}


def _pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        kind = obj["kind"]
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
            yield obj, obj["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield obj, obj["spec"]


def _referenced(pod: Obj) -> set[str]:
    """Secrets a pod cannot start without (``optional: true`` references excluded)."""
    names: set[str] = set()
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            ref = source.get("secretRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
    for volume in pod.get("volumes", []):
        if (secret := volume.get("secret")) and not secret.get("optional"):
            names.add(secret["secretName"])
        for source in (volume.get("projected") or {}).get("sources", []):
            if (secret := source.get("secret")) and not secret.get("optional"):
                names.add(secret["name"])
    names |= {ref["name"] for ref in pod.get("imagePullSecrets", [])}
    return names


def _produced(objects: list[Obj]) -> set[SecretRef]:
    made = {(o["metadata"].get("namespace", NAMESPACE), o["metadata"]["name"]) for o in objects if o["kind"] == "Secret"}
    for obj in objects:
        if obj["kind"] == "ServiceSpec":
            parsed = spec.parse(obj)
            if parsed.database.enabled:
                made.add((parsed.namespace, naming.database_secret_name(parsed.name)))
            if parsed.redis.enabled:
                made.add((parsed.namespace, naming.redis_secret_name(parsed.name)))
    return made


@pytest.mark.parametrize("install", INSTALLS)
def test_every_referenced_secret_is_made_by_the_install_the_operator_or_the_user(install: str) -> None:
    objects = INSTALLS[install]()
    produced = _produced(objects)
    missing = []
    for workload, pod in _pod_specs(objects):
        namespace = workload["metadata"].get("namespace", NAMESPACE)
        for name in sorted(_referenced(pod)):
            if (namespace, name) not in produced and name not in USER_SECRETS:
                missing.append(f"{workload['kind']}/{workload['metadata']['name']} needs Secret {namespace}/{name}")
    assert missing == [], f"{install}: nothing makes " + "; ".join(missing)


def test_user_secrets_are_documented() -> None:
    for name, document in USER_SECRETS.items():
        assert f"create secret generic {name}" in document.read_text(), f"{document} must tell how to create {name}"


def test_the_walk_sees_missing_secrets() -> None:
    """The check itself: a Deployment reading a Secret nobody makes is reported."""
    objects = render(UMBRELLA_CHART, {**_services_without_servicespecs()})
    needed = {name for _, pod in _pod_specs(objects) for name in _referenced(pod)}
    assert "gateway-redis" in needed
    assert (NAMESPACE, "gateway-redis") not in _produced(objects)


def test_examples_are_what_the_chart_would_render() -> None:
    """k8s/examples is the umbrella chart's ServiceSpecs, one per service, gateway included."""
    examples = {o["metadata"]["name"]: spec.parse(o) for o in _kustomize(ROOT / "k8s" / "examples")}
    charted = {o["metadata"]["name"]: spec.parse(o) for o in helm.find_all(render(UMBRELLA_CHART), "ServiceSpec")}
    assert set(examples) == {s.name for s in catalog.SERVICES}
    assert examples == charted
