"""What the operator loads: only light modules of services.kit, never the web stack.

The operator image installs requirements/operator.txt, which has no FastAPI, SQLAlchemy,
uvicorn or Kubernetes client; importing the operator as `python -m flotilla_operator`
does must load none of them, and every third-party module it loads must come from that
lock (the smoke test of `make images` would otherwise be the first to notice).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

IMPORT_OPERATOR = """
import importlib.metadata, json, sys
import flotilla_operator.__main__, flotilla_operator.handlers, flotilla_operator.crd  # the image's entry point
providers = importlib.metadata.packages_distributions()
top = {name.split(".")[0] for name in sys.modules}
third_party = {m: providers.get(m, []) for m in top
               if m not in sys.stdlib_module_names and m not in {"services", "flotilla_operator", "__main__"}}
print(json.dumps(third_party))
"""


def _loaded() -> dict[str, list[str]]:
    result = subprocess.run([sys.executable, "-c", IMPORT_OPERATOR], capture_output=True, text=True, timeout=120,
                            check=True)
    loaded: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_operator_loads_no_web_or_database_framework() -> None:
    loaded = _loaded()
    heavy = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "httpx", "kubernetes"}
    assert not heavy & set(loaded), f"the operator loads {sorted(heavy & set(loaded))}"


def test_every_module_the_operator_loads_is_in_its_lock() -> None:
    text = (ROOT / "requirements" / "operator.txt").read_text()
    locked = {canonicalize_name(n) for n in re.findall(r"^([A-Za-z0-9_.\-]+)==", text, re.M)}
    missing = {module: dists for module, dists in _loaded().items()
               if dists and not {canonicalize_name(d) for d in dists} & locked}
    assert not missing, f"loaded by the operator but not in requirements/operator.txt: {missing}"
