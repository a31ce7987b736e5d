"""Paths that deployment files and docs name exist (skaffold.yaml once sent readers to a
docs/deploy.md that was never written)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.charts.conftest import ROOT, SKAFFOLD_FILE

#: A path into the repository: starts with a top-level directory, ends in a name.
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|charts|k8s|operator|services|scripts|loadtest|tests)/[\w./-]*[\w/])")
FILES = sorted({
    SKAFFOLD_FILE,
    ROOT / "README.md",
    *(ROOT / "docs").glob("*.md"),
    *(p for p in (ROOT / "charts").rglob("*") if p.is_file() and p.suffix in {".yaml", ".txt", ".tpl", ".md"}),
    *(ROOT / "k8s").rglob("*.yaml"),
})


def _dangling(path: Path) -> list[str]:
    missing = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for ref in REPO_PATH.findall(line):
            # Relative to the repository, or (kustomize, Helm) to the file's own directory.
            if not (ROOT / ref).exists() and not (path.parent / ref).exists():
                missing.append(f"{path.name}:{number}: {ref}")
    return missing


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_named_paths_exist(path: Path) -> None:
    assert _dangling(path) == []


def test_the_check_sees_a_missing_file(tmp_path: Path) -> None:
    probe = tmp_path / "skaffold.yaml"
    probe.write_text("# see docs/operator.md, docs/no-such-page.md and charts/flotilla/values.yaml\n")
    assert _dangling(probe) == ["skaffold.yaml:1: docs/no-such-page.md"]
