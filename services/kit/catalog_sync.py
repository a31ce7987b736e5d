"""Rewrite the catalog-derived parts of the files that must stay static.

Helm values and schemas, skaffold.yaml and the k8s examples cannot import Python, so
they hold copies of the service list (services/kit/catalog.py). This module makes those
copies, and a test (tests/test_catalog_sync.py) fails when one drifts::

    python -m services.kit.catalog_sync           # list the files that differ; exit 1 if any
    python -m services.kit.catalog_sync --write   # rewrite them

In YAML files the generated parts sit between two marker lines,
``# >>> catalog: <part>`` and ``# <<< catalog: <part>``; everything outside them is
hand-written and kept. In README.md the architecture diagram and the kind walkthrough's
image loop are rewritten. JSON schemas are rewritten whole (their service keys and enums).
A k8s example ServiceSpec is created when missing and never overwritten (its SLOs are a
human decision). A service's block in charts/flotilla/values.yaml is generated unless a
hand-written block of the same name exists outside the markers (as for the gateway).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from services.kit import catalog
from services.kit.diagram import architecture_mermaid

ROOT = Path(__file__).resolve().parents[2]
_SERVICE_SCHEMA_DESCRIPTION = "Values of charts/service for this service (its own schema applies)."
_UPSTREAM_SCHEMA = {"type": "string", "pattern": "^(https?://.+)?$"}
_DEV_POSTGRES = ('postgresql://flotilla:flotilla-dev-only@'
                 '{{ include "flotilla.devServerName" (list . "postgresql") }}:5432/')
_DEV_REDIS = 'redis://{{ include "flotilla.devServerName" (list . "redis") }}:6379/0'


def _marker(kind: str, part: str) -> re.Pattern[str]:
    return re.compile(rf"^(?P<indent>[ \t]*)# {kind} catalog: {re.escape(part)}[ \t]*$", re.M)


def replace_region(text: str, part: str, lines: Iterable[str]) -> str:
    """``text`` with the lines between the ``part`` markers replaced by ``lines``.

    ``lines`` are indented like the opening marker.
    """
    begin, end = _marker(">>>", part).search(text), _marker("<<<", part).search(text)
    if begin is None or end is None or end.start() < begin.end():
        raise ValueError(f"markers '# >>> catalog: {part}' / '# <<< catalog: {part}' not found")
    indent = begin["indent"]
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
    return text[: begin.end() + 1] + body + text[end.start():]


def _strip_regions(text: str) -> str:
    return re.sub(r"^[ \t]*# >>> catalog: .*?^[ \t]*# <<< catalog: [^\n]*\n", "", text, flags=re.M | re.S)


def skaffold(text: str) -> str:
    artifacts: list[str] = []
    templates: list[str] = []
    for s in catalog.SERVICES:
        artifacts += [f"- image: flotilla-{s.name}", "  context: .", "  docker:",
                      "    dockerfile: Dockerfile", "    target: service", "    buildArgs:", f"      SERVICE: {s.name}"]
        var = f"flotilla_{s.name.replace('-', '_')}"
        templates += [f'{s.name}.image.repository: "{{{{.IMAGE_REPO_{var}}}}}"',
                      f'{s.name}.image.tag: "{{{{.IMAGE_TAG_{var}}}}}@{{{{.IMAGE_DIGEST_{var}}}}}"']
    return replace_region(replace_region(text, "artifacts", artifacts), "image values", templates)


def umbrella_chart(text: str) -> str:
    lines: list[str] = []
    for s in catalog.SERVICES:
        lines += ["- name: service", f"  alias: {s.name}", "  version: 0.1.0", "  repository: file://../service"]
    return replace_region(text, "dependencies", lines)


def umbrella_values(text: str) -> str:
    hand_written = yaml.safe_load(_strip_regions(text)) or {}
    lines: list[str] = []
    for s in catalog.SERVICES:
        if s.name in hand_written:
            continue
        summary = s.summary[:1].upper() + s.summary[1:] or s.name
        lines += ["", f"# -- {summary}.", f"{s.name}:", f"  serviceName: {s.name}",
                  "  image:", f"    repository: flotilla-{s.name}", '    tag: ""']
        if not s.has_database:
            lines += ["  database:", "    enabled: false"]
    databases = ", ".join(s.name for s in catalog.SERVICES if s.has_database)
    text = replace_region(text, "services", lines[1:])
    return replace_region(text, "databases", ["# -- One database per service with a database (catalog has_database).",
                                             f"databases: [{databases}]"])


def dev_values(text: str) -> str:
    lines: list[str] = []
    for s in catalog.SERVICES:
        lines += ["", f"{s.name}:", "  replicaCount: 1", "  autoscaling: {enabled: false}",
                  "  serviceSpec: {create: false}", "  logLevel: DEBUG"]
        if s.has_database:
            lines += ["  database:", f"    url: '{_DEV_POSTGRES}{s.name}'"]
        lines += ["  redis:", f"    url: '{_DEV_REDIS}'"]
    return replace_region(text, "services", lines[1:])


def service_values(text: str) -> str:
    return replace_region(text, "upstreams", [f'{s.name}: ""' for s in catalog.BACKENDS])


def _dump_json(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def umbrella_schema(text: str) -> str:
    document = json.loads(text)
    names = [s.name for s in catalog.SERVICES]
    properties: dict[str, object] = {}
    for key, value in document["properties"].items():
        is_service = isinstance(value, dict) and value.get("description") == _SERVICE_SCHEMA_DESCRIPTION
        if is_service or key in names:
            if not any(n in properties for n in names):  # the services go where the first one was
                properties.update({n: {"type": "object", "description": _SERVICE_SCHEMA_DESCRIPTION} for n in names})
            continue
        properties[key] = value
    document["properties"] = properties
    return _dump_json(document)


def service_schema(text: str) -> str:
    document = json.loads(text)
    document["properties"]["serviceName"]["enum"] = [s.name for s in catalog.SERVICES]
    document["properties"]["upstreams"]["properties"] = {s.name: dict(_UPSTREAM_SCHEMA) for s in catalog.BACKENDS}
    return _dump_json(document)


def readme(text: str) -> str:
    """The architecture diagram (services/kit/diagram.py) and the image loop of the kind walkthrough."""
    text = re.sub(r"```mermaid\n.*?```", lambda _: f"```mermaid\n{architecture_mermaid()}```", text,
                  count=1, flags=re.S)
    names = " ".join(s.name for s in catalog.SERVICES)
    return re.sub(r"^(\s*)for svc in [a-z0-9 ]+; do$", lambda m: f"{m[1]}for svc in {names}; do", text, flags=re.M)


def kustomization(text: str) -> str:
    return replace_region(text, "resources", [f"- {s.name}.yaml" for s in catalog.SERVICES])


def example_spec(service: catalog.ServiceInfo) -> str:
    """The ServiceSpec of a new service's k8s example (what the umbrella chart renders)."""
    database = (f"    enabled: true\n    name: {service.name}\n"
                "    deletionPolicy: Retain    # Retain | Delete: what happens to the data when this goes\n"
                if service.has_database else "    enabled: false\n")
    return (f"apiVersion: flotilla.dev/v1alpha1\nkind: ServiceSpec\nmetadata:\n  name: {service.name}\n"
            f"  namespace: flotilla\nspec:\n  database:\n{database}  redis:\n    enabled: true\n"
            f'    keyPrefix: "{service.name}:"\n  dashboards:\n    enabled: true\n    slo:\n'
            "      availability: 99.9   # percent of non-5xx requests over 30 days\n"
            "      latencyP95Ms: 300    # 95% of requests faster than this\n")


#: File (relative to the repository root) -> its expected text given the current one.
REWRITERS: dict[str, Callable[[str], str]] = {
    "skaffold.yaml": skaffold,
    "charts/flotilla/Chart.yaml": umbrella_chart,
    "charts/flotilla/values.yaml": umbrella_values,
    "charts/flotilla/values-dev.yaml": dev_values,
    "charts/flotilla/values.schema.json": umbrella_schema,
    "charts/service/values.yaml": service_values,
    "charts/service/values.schema.json": service_schema,
    "k8s/examples/kustomization.yaml": kustomization,
    "README.md": readme,
}


def expected(root: Path = ROOT) -> dict[Path, str]:
    """Every catalog-derived file whose text differs from what the catalog makes, with that text."""
    out: dict[Path, str] = {}
    for relative, rewrite in REWRITERS.items():
        path = root / relative
        current = path.read_text()
        wanted = rewrite(current)
        if wanted != current:
            out[path] = wanted
    for service in catalog.SERVICES:
        path = root / "k8s" / "examples" / f"{service.name}.yaml"
        if not path.exists():
            out[path] = example_spec(service)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.kit.catalog_sync", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the files that differ")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    drift = expected(args.root)
    for path in drift:
        if args.write:
            path.write_text(drift[path])
        print(f"{'rewrote' if args.write else 'differs from the catalog'}: {path.relative_to(args.root)}")
    return 1 if drift and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
