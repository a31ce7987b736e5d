"""k8s/operator/operator.yaml is the operator chart rendered with its defaults.

Regenerate after changing the chart: ``python -m tests.operator.manifests``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support import helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flotilla-operator"
PLAIN = ROOT / "k8s" / "operator" / "operator.yaml"
RELEASE = "flotilla-operator"
NAMESPACE = "flotilla"
HEADER = (
    "# Generated from charts/flotilla-operator (default values, release flotilla-operator,\n"
    "# namespace flotilla) by `python -m tests.operator.manifests`; a test keeps it equal.\n"
)


def rendered() -> list[dict[str, Any]]:
    objects = helm.render(CHART, {}, release=RELEASE, namespace=NAMESPACE)
    for obj in objects:
        # Helm bookkeeping means nothing to `kubectl apply -k`.
        for labels in (obj["metadata"].get("labels", {}),
                       obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})):
            labels.pop("helm.sh/chart", None)
            if labels.get("app.kubernetes.io/managed-by") == "Helm":
                labels["app.kubernetes.io/managed-by"] = "kustomize"
    return objects


def write() -> None:
    PLAIN.parent.mkdir(parents=True, exist_ok=True)
    PLAIN.write_text(HEADER + yaml.safe_dump_all(rendered(), sort_keys=False))


if __name__ == "__main__":
    write()
