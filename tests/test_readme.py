"""README.md tells the truth about the code: the architecture picture is the catalog's,
the deploy docs tell one namespace story, and the two set-up commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from services.kit import catalog
from services.kit.diagram import architecture_mermaid

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OPERATOR_DOC = (ROOT / "docs" / "operator.md").read_text()


def _mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.DOTALL)


def test_the_architecture_diagram_is_the_catalogs() -> None:
    """Regenerate with `python -m services.kit.diagram` when the catalog changes."""
    assert _mermaid_blocks(README) == [architecture_mermaid()]


def test_every_catalog_service_is_in_the_diagram() -> None:
    diagram = architecture_mermaid()
    nodes = set(re.findall(r"^\s+(\w+)\[\"", diagram, flags=re.MULTILINE))
    assert nodes == {service.name for service in catalog.SERVICES}
    for service in catalog.BACKENDS:
        assert f"| {service.name}" in diagram, f"no route from the gateway to {service.name}"
        assert f":{service.local_port}<br/>" in diagram


def test_one_namespace_across_readme_and_the_operator_docs() -> None:
    for name, text in (("README.md", README), ("docs/operator.md", OPERATOR_DOC)):
        namespaces = set(re.findall(r"(?:\s-n|--namespace|create namespace)[ =]([a-z0-9][a-z0-9-]*)", text))
        namespaces |= set(re.findall(r"namespace: (\w[\w-]*)", text))
        assert namespaces == {"flotilla"}, (name, namespaces)


def test_the_kind_walkthrough_builds_and_loads_every_image_including_the_operators() -> None:
    walkthrough = README.partition("### Try it on kind")[2].partition("\n### ")[0]
    assert "for svc in " + " ".join(s.name for s in catalog.SERVICES) + "; do" in walkthrough
    assert "kind load docker-image flotilla-$svc:$TAG" in walkthrough
    assert "docker build --target operator -t flotilla-operator:$TAG ." in walkthrough
    assert "kind load docker-image flotilla-operator:$TAG" in walkthrough
    assert "-f charts/flotilla/values-dev.yaml" in walkthrough
    app_version = re.search(r'^appVersion: "?([^"\n]+)"?$', (ROOT / "charts/flotilla/Chart.yaml").read_text(),
                            flags=re.MULTILINE)
    assert app_version
    assert f"TAG={app_version.group(1)} " in walkthrough  # the tag the charts pull by default
    assert "port-forward svc/flotilla-gateway" in walkthrough


def test_the_set_up_commands_are_make_targets() -> None:
    setup = README.partition("## Set-up")[2].partition("```sh\n")[2].partition("```")[0]
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip().startswith("make")]
    assert commands == ["make up", "make test"]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    assert {"up", "test"} <= targets


def test_troubleshooting_covers_the_common_errors() -> None:
    section = README.partition("## Troubleshooting")[2].partition("\n## ")[0]
    for topic in ("already in use", "DATABASE_URL", "cannot connect to the database", "redis is unreachable",
                  "`429`", "`503`"):
        assert topic in section, topic


def test_the_kube_play_gaps_are_the_ones_kubeplay_prints() -> None:
    from scripts.kubeplay.plan import GAPS

    section = README.split("### The chart's pods, run here")[1].split("\n### ")[0]
    assert re.findall(r"^- \*\*(.+?):\*\*", section, flags=re.MULTILINE) == list(GAPS)
