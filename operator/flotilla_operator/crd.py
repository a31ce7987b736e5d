"""The ServiceSpec CRD: load it, and keep its copies in the charts and k8s/ in sync.

``crd.yaml`` next to this module is the one source of truth. Helm installs CRDs from a
chart's ``crds/`` directory and ``kubectl apply -k`` cannot reach outside ``k8s/``, so
two byte-identical copies exist; ``python -m flotilla_operator.crd --write`` refreshes
them and ``--check`` (and a test) fails when they drift.
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

GROUP: Final = "flotilla.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "servicespecs"
KIND: Final = "ServiceSpec"
NAME: Final = f"{PLURAL}.{GROUP}"

SOURCE: Final = Path(__file__).with_name("crd.yaml")
#: Where the copies live, relative to the repository root.
COPIES: Final = (
    Path("charts/flotilla-operator/crds") / f"{NAME}.yaml",
    Path("k8s/crd") / f"{NAME}.yaml",
)


def repo_root() -> Path:
    return SOURCE.parents[2]


def source_text() -> str:
    return SOURCE.read_text(encoding="utf-8")


@cache
def _manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(source_text())
    if not isinstance(loaded, dict):
        raise TypeError(f"{SOURCE} is not a YAML mapping")
    return loaded


def manifest() -> dict[str, Any]:
    """The CRD as a dict (a deep copy, so callers may mutate it)."""
    loaded: dict[str, Any] = yaml.safe_load(yaml.safe_dump(_manifest()))
    return loaded


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the served version."""
    for version in manifest()["spec"]["versions"]:
        if version["name"] == VERSION:
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(f"{NAME} has no version {VERSION}")


def stale_copies(root: Path | None = None) -> list[Path]:
    base = root or repo_root()
    expected = source_text()
    return [
        copy for copy in COPIES
        if not (base / copy).exists() or (base / copy).read_text(encoding="utf-8") != expected
    ]


def write_copies(root: Path | None = None) -> list[Path]:
    base = root or repo_root()
    written = []
    for copy in stale_copies(base):
        target = base / copy
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source_text(), encoding="utf-8")
        written.append(copy)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flotilla_operator.crd", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="refresh the copies from crd.yaml")
    mode.add_argument("--check", action="store_true", help="exit 1 if a copy differs from crd.yaml")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_copies():
            sys.stdout.write(f"wrote {path}\n")
        return 0
    if args.check:
        stale = stale_copies()
        for path in stale:
            sys.stderr.write(f"{path} differs from {SOURCE.name}; run python -m flotilla_operator.crd --write\n")
        return 1 if stale else 0
    sys.stdout.write(source_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
