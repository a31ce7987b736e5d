"""`flotilla new-service NAME`: a working service in the house style, wired everywhere.

It writes ``services/<name>/`` (settings, app, routes with one example resource: CRUD,
keyset pagination, a cached list; models, schemas, an Alembic migration) and
``tests/services/test_<name>_api.py`` from the text templates in
``services/kit/templates/``, adds the catalog entry, then runs the catalog generator
(``python -m services.kit.catalog_sync --write``) and the charts' README tables
(``python -m tests.charts.values_table``).
"""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from services.kit import catalog
from services.kit.catalog_sync import ROOT
from services.kit.names import BadServiceName, default_route, validate_service_name

_SERVICES_TUPLE = re.compile(r"^(SERVICES: tuple\[ServiceInfo, \.\.\.\] = \()([^)]*)\)", re.M)
_ENTRIES_END = "#: Every service, gateway first."


@dataclass
class Scaffolded:
    created: list[Path] = field(default_factory=list)
    touched: list[Path] = field(default_factory=list)


def _templates() -> Traversable:
    return resources.files("services.kit") / "templates"


def _walk(folder: Traversable, relative: Path = Path()) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _walk(entry, relative / entry.name)
        elif entry.name != "__pycache__":
            found.append((relative / entry.name, entry))
    return found


def _sort_imports(paths: list[Path], root: Path) -> None:
    """Where ``services.<name>`` sorts against ``services.kit`` depends on the name: let ruff
    (a dev tool: skipped when absent) order the import blocks as the linter wants them."""
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "--quiet", "--select", "I",  # noqa: S603
                    *map(str, paths)], cwd=root, capture_output=True, check=False)


def catalog_entry(name: str, *, route: str, port: int, summary: str) -> str:
    title = name.capitalize()
    return (f"{name.upper()} = ServiceInfo(\n    name={json.dumps(name)},\n    local_port={port},\n"
            f'    factory="services.{name}.app:create_app",\n'
            f'    settings="services.{name}.settings:{title}Settings",\n'
            f"    routes=({json.dumps(route)},),\n    summary={json.dumps(summary, ensure_ascii=False)},\n)\n")


def add_to_catalog(text: str, name: str, *, route: str, port: int, summary: str) -> str:
    """``catalog.py``'s text with the new entry defined and appended to SERVICES."""
    if re.search(rf"^{name.upper()}\b", text, re.M):
        raise BadServiceName(f"bad service name {name!r}: services/kit/catalog.py already defines {name.upper()}")
    match = _SERVICES_TUPLE.search(text)
    if match is None or _ENTRIES_END not in text:
        raise RuntimeError("services/kit/catalog.py: SERVICES tuple not found where expected")
    text = text[: match.start()] + f"{match[1]}{match[2].rstrip(', ')}, {name.upper()})" + text[match.end():]
    entry = catalog_entry(name, route=route, port=port, summary=summary)
    return text.replace(_ENTRIES_END, f"{entry}\n{_ENTRIES_END}")


def new_service(name: str, *, route: str | None = None, summary: str = "", root: Path = ROOT) -> Scaffolded:
    route = route or default_route(name)
    validate_service_name(name, route=route)
    package = root / "services" / name
    if package.exists():
        raise BadServiceName(f"bad service name {name!r}: {package.relative_to(root)} already exists")
    summary = summary or f"{name}: example items, each owned by its user"
    values = {"name": name, "Name": name.capitalize(), "NAME": name.upper(), "route": route, "summary": summary,
              "Summary": summary[:1].upper() + summary[1:], "date": datetime.now(UTC).date().isoformat()}
    done = Scaffolded()
    targets = {"service": package, "tests": root / "tests" / "services"}
    for kind, destination in targets.items():
        for relative, source in _walk(_templates() / kind):
            text = source.read_text()
            if relative.suffix == ".tmpl":
                text = string.Template(text).substitute(values)
                relative = relative.with_suffix("")
            if kind == "tests":
                relative = relative.with_name(f"test_{name}_api.py")
            path = destination / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            done.created.append(path)

    _sort_imports([p for p in done.created if p.suffix == ".py"], root)

    catalog_path = root / "services" / "kit" / "catalog.py"
    port = max(s.local_port for s in catalog.SERVICES) + 1
    catalog_path.write_text(add_to_catalog(catalog_path.read_text(), name, route=route, port=port, summary=summary))
    done.touched.append(catalog_path)
    # Fresh interpreters in ``root`` so that they read the catalog just written.
    sync = subprocess.run([sys.executable, "-m", "services.kit.catalog_sync", "--write", "--root", str(root)],  # noqa: S603
                          cwd=root, capture_output=True, text=True, check=True)
    for line in sync.stdout.splitlines():
        path = root / line.partition(": ")[2]
        (done.created if path.name == f"{name}.yaml" else done.touched).append(path)
    if (root / "tests" / "charts" / "values_table.py").exists():
        tables = subprocess.run([sys.executable, "-m", "tests.charts.values_table"],
                                cwd=root, capture_output=True, text=True, check=True)
        done.touched += [root / line.removeprefix("wrote ") for line in tables.stdout.splitlines()
                         if line.startswith("wrote ")]
    return done
