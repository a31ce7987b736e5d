"""Render, lint and validate Helm charts offline with Helm's own Go engine.

The engine is ``helm-python-sdk`` (``libhelm_c``, Helm 4's Go SDK); object schemas come
from ``kubernetes-validate``. No cluster, no ``helm`` binary. The whole API::

    objects = render("charts/service", {"serviceName": "tasks"})      # list of dicts
    files = render_files("charts/service", {...})                    # path -> text
    assert lint("charts/service", {...}) == []                       # strict findings
    validate(objects, "1.30", custom_schemas=crd_schemas(crd_path))  # raises ManifestError
    validate_values("charts/service", {"replicaCount": "two"})       # raises HelmValuesError
    find(objects, "Deployment")                                      # one object by kind
    merge_values(dev_values, {"global": {...}})                      # as `-f a.yaml -f b.yaml`

Charts whose ``Chart.yaml`` declares ``file://`` dependencies (the umbrella chart) are
staged into a temporary directory together with those dependencies and their
``charts/`` folder is built there, so the working tree is never written to and a
render always uses the dependencies' current sources.
"""

from __future__ import annotations

import atexit
import copy
import functools
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import yaml
from helm_python import _native
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from packaging.version import Version
from referencing import Registry, Resource

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_RELEASE",
    "LintFinding",
    "ManifestError",
    "crd_schemas",
    "find",
    "find_all",
    "kube_versions",
    "lint",
    "merge_values",
    "render",
    "render_files",
    "validate",
    "validate_values",
]

DEFAULT_RELEASE = "flotilla"
DEFAULT_NAMESPACE = "flotilla"

#: Lint severities as libhelm_c reports them.
_SEVERITY_NAMES = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
_WARNING = 2

Obj = dict[str, Any]


class ManifestError(AssertionError):
    """Rendered objects that Kubernetes would reject; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid manifests:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True, slots=True)
class LintFinding:
    severity: str  # "warning" or "error" (info findings are not returned)
    path: str
    message: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.path}: {self.message}"


# --- rendering ------------------------------------------------------------------------


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` as Helm layers values files: maps merge key by key, any
    other value replaces. Neither argument is changed."""
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        merged[key] = merge_values(below, value) if isinstance(value, Mapping) and isinstance(below, Mapping) \
            else value
    return merged



def render_files(
    chart_dir: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    api_versions: Iterable[str] = (),
    kube_version: str | None = None,
    is_upgrade: bool = False,
) -> dict[str, str]:
    """Render ``chart_dir`` as ``helm template`` would: template path -> rendered text.

    ``api_versions`` are extra ``.Capabilities.APIVersions`` entries (``helm template
    --api-versions``), e.g. ``"monitoring.coreos.com/v1"``; ``kube_version`` sets
    ``.Capabilities.KubeVersion`` (e.g. ``"1.27.0"``; default: the engine's own).
    Values are checked against ``values.schema.json`` first, as ``helm install`` does;
    a violation raises :class:`helm_python.HelmValuesError`.
    """
    opts: dict[str, Any] = {
        "name": release,
        "namespace": namespace,
        "is_install": not is_upgrade,
        "is_upgrade": is_upgrade,
    }
    if api_versions:
        opts["api_versions"] = list(api_versions)
    if kube_version:
        opts["kube_version"] = kube_version if kube_version.startswith("v") else f"v{kube_version}"
    with helm_python.Chart.load(_staged(chart_dir)) as chart:
        # Chart.render() does not expose api_versions/kube_version; the native call
        # underneath accepts them in the same options document. It processes dependency
        # aliases and validates values against every chart's schema, as install does.
        rendered = _native.call_string("helm_render", chart._raw(), json.dumps(dict(values or {})), json.dumps(opts))
    files: dict[str, str] = json.loads(rendered)
    return files


def render(
    chart_dir: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    api_versions: Iterable[str] = (),
    kube_version: str | None = None,
    is_upgrade: bool = False,
) -> list[Obj]:
    """Render and parse: every Kubernetes object of the chart (hooks and tests included).

    Objects come in template-path order; NOTES.txt and empty documents are dropped.
    Same arguments as :func:`render_files`.
    """
    files = render_files(
        chart_dir,
        values,
        release=release,
        namespace=namespace,
        api_versions=api_versions,
        kube_version=kube_version,
        is_upgrade=is_upgrade,
    )
    objects: list[Obj] = []
    for path in sorted(files):
        if not path.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(files[path]):
            if document:
                if not isinstance(document, dict) or "kind" not in document:
                    raise ManifestError([f"{path}: not a Kubernetes object: {document!r:.200}"])
                objects.append(document)
    return objects


def find_all(objects: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Every object of ``kind`` (and ``metadata.name``, if given)."""
    return [obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]


def find(objects: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    """The one object of ``kind`` (and ``name``); fails unless exactly one matches."""
    matches = find_all(objects, kind, name)
    if len(matches) != 1:
        found = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in matches)
        raise LookupError(f"expected exactly one {kind} {name or ''}, found {found}")
    return matches[0]


# --- lint and values schema --------------------------------------------------------------


def lint(
    chart_dir: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    strict: bool = True,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str | None = None,
) -> list[LintFinding]:
    """``helm lint [--strict]`` with ``values``: the warnings and errors (empty = clean).

    Info findings (e.g. "icon is recommended") are not returned.
    """
    report = helm_python.lint(
        _staged(chart_dir),
        dict(values or {}),
        strict=strict,
        namespace=namespace,
        with_subcharts=True,
        kube_version=(
            None if kube_version is None else kube_version if kube_version.startswith("v") else f"v{kube_version}"
        ),
    )
    findings = [
        LintFinding(_SEVERITY_NAMES.get(m["severity"], "unknown"), m["path"], m["error"])
        for m in report.get("messages") or []
        if m["severity"] >= _WARNING
    ]
    # Errors that are not tied to a file (chart load failures) come only in "errors".
    reported = {f.message for f in findings}
    findings += [LintFinding("error", "", e) for e in report.get("errors") or [] if e not in reported]
    return findings


def validate_values(chart_dir: str | Path, values: Mapping[str, Any]) -> None:
    """Check ``values`` against the values.schema.json of the chart and its subcharts.

    Exactly what ``helm install`` checks (defaults merged, dependency aliases applied).
    Raises :class:`helm_python.HelmValuesError` naming the chart and the offending key.
    """
    # Chart.validate_schema() ignores dependency aliases, so an umbrella chart's subchart
    # values would be checked under the wrong key; rendering checks them as install does.
    render_files(chart_dir, values)


# --- object validation -------------------------------------------------------------------


def kube_versions() -> list[str]:
    """Kubernetes versions (``"1.25.0"``...) kubernetes-validate has schemas for, oldest first."""
    return list(all_versions())


def crd_schemas(*crd_files: str | Path) -> dict[tuple[str, str], Obj]:
    """``(apiVersion, kind) -> JSON schema`` for every served version of the given CRDs.

    Feed the result to :func:`validate` as ``custom_schemas``. Object schemas are made
    strict (unknown fields rejected, as the API server's pruning would silently drop
    them) except under ``metadata`` and where ``x-kubernetes-preserve-unknown-fields``
    says otherwise.
    """
    schemas: dict[tuple[str, str], Obj] = {}
    for crd_file in crd_files:
        for crd in yaml.safe_load_all(Path(crd_file).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(
    objects: Iterable[Obj],
    kube_version: str,
    *,
    custom_schemas: Mapping[tuple[str, str], Obj] | None = None,
    allow_unknown_kinds: Iterable[tuple[str, str]] = (),
    strict: bool = True,
) -> None:
    """Check every object against Kubernetes' OpenAPI schemas for ``kube_version``.

    Built-in kinds use kubernetes-validate (``strict``: unknown fields are errors).
    Custom resources use ``custom_schemas`` (see :func:`crd_schemas`); a kind with no
    schema at all is a problem unless its ``(apiVersion, kind)`` is in
    ``allow_unknown_kinds`` (e.g. ``("monitoring.coreos.com/v1", "ServiceMonitor")``
    when the Prometheus Operator's CRDs are not at hand). Also checks that no two
    objects share kind, namespace and name. Raises :class:`ManifestError` listing all
    problems.
    """
    custom = dict(custom_schemas or {})
    unknown_ok = set(allow_unknown_kinds)
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        api_version, kind = obj.get("apiVersion", "?"), obj.get("kind", "?")
        name = (obj.get("metadata") or {}).get("name", "?")
        label = f"{kind}/{name}"
        key = (kind, (obj.get("metadata") or {}).get("namespace", ""), name)
        if key in seen:
            problems.append(f"{label}: defined twice")
        seen.add(key)
        if (api_version, kind) in custom:
            problems += _schema_problems(label, obj, custom[(api_version, kind)])
            continue
        validator = _k8s_validator(kube_version, api_version, kind, strict)
        if validator is None:
            if (api_version, kind) not in unknown_ok:
                problems.append(f"{label}: no schema for {api_version} {kind} in k8s {kube_version}")
            continue
        version, checker = validator
        for error in sorted(checker.iter_errors(obj), key=lambda e: list(map(str, e.path))):
            where = ".".join(str(p) for p in error.path) or "<root>"
            problems.append(f"{label} (k8s {version}): {where}: {error.message}")
    if problems:
        raise ManifestError(problems)


# --- internals ---------------------------------------------------------------------------


@functools.cache
def _k8s_validator(
    kube_version: str, api_version: str, kind: str, strict: bool
) -> tuple[str, jsonschema.Draft202012Validator] | None:
    """kubernetes-validate's schema for one kind, as a reusable validator (or None).

    Same schema files and version resolution as ``kubernetes_validate.validate``, but the
    large definitions document is loaded once per version instead of once per object.
    """
    wanted = major_minor(kube_version.removeprefix("v"))
    candidates = [v for v in all_versions() if Version(major_minor(v)) <= Version(wanted)]
    if not candidates:
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {kube_version}")
    version = candidates[-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local" + ("-strict" if strict else "")
    # rbac.authorization.k8s.io/v1 -> rbac-v1, apps/v1 -> apps-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        return None
    # Both documents carry their own $id ("/api/..."), which is what the $refs use.
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_definitions(schema_dir, version)) @ registry
    return major_minor(version), jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(schema_dir: str, version: str) -> Any:
    return schema_contents(f"{schema_dir}/_definitions.json", version)


def _schema_problems(label: str, obj: Obj, schema: Obj) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{label}: {'.'.join(str(p) for p in error.path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]


def _strict(schema: Obj, *, under_metadata: bool = False) -> Obj:
    properties = schema.get("properties")
    if (
        isinstance(properties, dict)
        and not under_metadata
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    for key, sub in (properties or {}).items():
        if isinstance(sub, dict):
            # Kubernetes fills metadata itself; only the constraints the CRD states apply.
            _strict(sub, under_metadata=under_metadata or key == "metadata")
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            _strict(schema[keyword], under_metadata=under_metadata)
    return schema


_STAGED: dict[tuple[Path, str], Path] = {}


def _staged(chart_dir: str | Path) -> Path:
    """``chart_dir`` itself, or a temp copy with its ``file://`` dependencies built."""
    chart_dir = Path(chart_dir).resolve()
    local_deps = _local_dependencies(chart_dir)
    if not local_deps:
        return chart_dir
    key = (chart_dir, _fingerprint([chart_dir, *local_deps.values()]))
    if key not in _STAGED:
        root = Path(tempfile.mkdtemp(prefix="flotilla-chart-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        staged = root / "stage" / chart_dir.name
        shutil.copytree(chart_dir, staged, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
        for relative, source in local_deps.items():
            target = (staged / relative).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"{chart_dir}: dependency {relative} reaches outside the staging area")
            if not target.exists():
                shutil.copytree(source, target)
        helm_python.dependency_update(staged, skip_refresh=True)
        _STAGED[key] = staged
    return _STAGED[key]


def _local_dependencies(chart_dir: Path) -> dict[str, Path]:
    metadata = yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}
    deps: dict[str, Path] = {}
    for dep in metadata.get("dependencies") or []:
        repository = str(dep.get("repository", ""))
        if repository.startswith("file://"):
            relative = repository.removeprefix("file://")
            deps[relative] = (chart_dir / relative).resolve()
    return deps


def _fingerprint(dirs: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for directory in dirs:
        for path in sorted(_files(directory)):
            digest.update(str(path).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _files(directory: Path) -> Iterator[Path]:
    for path in directory.rglob("*"):
        if path.is_file() and "charts" not in path.relative_to(directory).parts[:1]:
            yield path
