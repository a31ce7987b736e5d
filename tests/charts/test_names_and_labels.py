"""Names and labels the API server accepts, whatever the release name and image tag.

kubernetes-validate checks types, not names: a label value of 64 characters, one with
an "@", or a Service name over 63 only fail at ``helm install``. Helm allows release
names up to 53 characters; skaffold sets image tags to ``<tag>@<digest>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.charts.conftest import ROOT, SERVICE_CHART, SERVICE_NAMES, UMBRELLA_CHART, dev_values, render
from tests.support import helm

OPERATOR_CHART = ROOT / "charts" / "flotilla-operator"
#: Helm's limit (``helm install`` refuses longer release names).
LONGEST_RELEASE = "r" * 20 + "-release-name-of-fifty-three-chars"[: 53 - 20]
DIGEST = "sha256:" + "0123456789abcdef" * 4
#: Tags the charts' schemas accept (Docker's tag syntax, optionally "@<digest>" or a bare "@").
ODD_TAGS = (f"1.4.2@{DIGEST}", "1.4.2@", "2026-11-28_" + "x" * 70, "_weird.", "v1.4.2-rc.1")

_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
#: Kinds whose names must be DNS-1035 labels (they become DNS names or hostnames).
_LABEL_NAMED_KINDS = {"Service", "Namespace"}
#: A StatefulSet's pods get the label controller-revision-hash=<name>-<10 chars>.
_STATEFULSET_MAX = 63 - 11

Obj = dict[str, Any]


def _label_sets(obj: Obj) -> Iterator[tuple[str, dict[str, str]]]:
    yield "metadata.labels", obj["metadata"].get("labels") or {}
    spec = obj.get("spec") or {}
    template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template") or {}
    yield "template labels", (template.get("metadata") or {}).get("labels") or {}
    yield "selector", (spec.get("selector") or {}).get("matchLabels") or {}


def problems(objects: list[Obj]) -> list[str]:
    found = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        where = f"{kind}/{name}"
        if kind in _LABEL_NAMED_KINDS:
            if not _DNS_LABEL.fullmatch(name):
                found.append(f"{where}: name is not a DNS-1035 label of at most 63 characters")
        elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            found.append(f"{where}: name is not a DNS-1123 subdomain")
        if kind == "StatefulSet" and len(name) > _STATEFULSET_MAX:
            found.append(f"{where}: over {_STATEFULSET_MAX} characters, its pods' controller-revision-hash "
                         "label would exceed 63")
        for part, labels in _label_sets(obj):
            for key, value in labels.items():
                prefix, _, key_name = key.rpartition("/")
                if not _LABEL_NAME.fullmatch(key_name) or (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)):
                    found.append(f"{where} {part}: key {key!r} is not a valid label key")
                if value != "" and not _LABEL_NAME.fullmatch(str(value)):
                    found.append(f"{where} {part}: {key}={value!r} is not a valid label value")
    return found


CASES: dict[str, tuple[Path, dict[str, Any]]] = {
    "service": (SERVICE_CHART, {}),
    "service-everything-on": (SERVICE_CHART, {
        "autoscaling": {"enabled": True}, "serviceMonitor": {"enabled": True, "force": True}}),
    "umbrella": (UMBRELLA_CHART, {}),
    "umbrella-dev": (UMBRELLA_CHART, dev_values()),
    "operator": (OPERATOR_CHART, {"metrics": {"serviceMonitor": {"enabled": True}}}),
    "operator-peering-scoped": (OPERATOR_CHART, {"peering": {"enabled": True}, "replicaCount": 2,
                                                 "watchNamespaces": ["team-a"]}),
}


def test_longest_release_is_helms_limit() -> None:
    assert len(LONGEST_RELEASE) == 53


@pytest.mark.parametrize("case", CASES)
def test_longest_release_name_gives_valid_names_and_labels(case: str) -> None:
    chart, values = CASES[case]
    objects = helm.render(chart, values, release=LONGEST_RELEASE)
    assert problems(objects) == []


@pytest.mark.parametrize("tag", ODD_TAGS)
@pytest.mark.parametrize("chart", [SERVICE_CHART, OPERATOR_CHART], ids=["service", "operator"])
def test_any_image_tag_gives_valid_labels(chart: Path, tag: str) -> None:
    objects = render(chart, {"image": {"tag": tag}})
    assert problems(objects) == []
    version = helm.find(objects, "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"]
    assert "@" not in version
    assert "sha256" not in version


def test_umbrella_with_skaffold_tags_gives_valid_labels() -> None:
    """What skaffold sets: ``<tag>@<digest>`` for every service."""
    values = {name: {"image": {"tag": f"abc123@{DIGEST}"}} for name in SERVICE_NAMES}
    objects = render(UMBRELLA_CHART, values)
    assert problems(objects) == []
    for deployment in helm.find_all(objects, "Deployment"):
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "abc123"
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":abc123@{DIGEST}")


def test_the_check_itself_catches_bad_names_and_labels() -> None:
    bad = [
        {"kind": "Service", "metadata": {"name": "s" * 64}},
        {"kind": "ConfigMap", "metadata": {"name": "ok", "labels": {"v": "1.0@sha256:abc"}}},
        {"kind": "StatefulSet", "metadata": {"name": "s" * 53}, "spec": {}},
        {"kind": "Deployment", "metadata": {"name": "d", "labels": {"bad key": "x"}}, "spec": {}},
    ]
    assert len(problems(bad)) == 4


def test_dev_urls_reach_the_dev_servers_for_the_longest_release() -> None:
    objects = helm.render(UMBRELLA_CHART, dev_values(), release=LONGEST_RELEASE)
    services = {s["metadata"]["name"] for s in helm.find_all(objects, "Service")}
    hosts = {urlsplit(url).hostname for secret in helm.find_all(objects, "Secret")
             for key, url in (secret.get("stringData") or {}).items() if key.endswith("_URL")}
    assert len(hosts) == 2
    assert hosts <= services


def test_sibling_addresses_survive_the_longest_release() -> None:
    """The gateway's upstream URLs and the Ingress backend name Services that exist."""
    objects = helm.render(UMBRELLA_CHART, {"ingress": {"enabled": True}}, release=LONGEST_RELEASE)
    services = {s["metadata"]["name"] for s in helm.find_all(objects, "Service")}
    config = next(c["data"] for c in helm.find_all(objects, "ConfigMap") if c["metadata"]["name"].endswith("-gateway"))
    upstreams = {urlsplit(v).hostname for k, v in config.items() if k.startswith("GATEWAY_") and k.endswith("_URL")}
    assert upstreams
    assert upstreams <= services
    backend = helm.find(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend in services
