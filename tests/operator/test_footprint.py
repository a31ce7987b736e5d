"""What the operator loads: only light modules of services.kit, never the web stack.

The operator image installs requirements/operator.txt, which has no FastAPI, SQLAlchemy,
uvicorn or Kubernetes client; importing the operator as `python -m flotilla_operator`
does must load none of the first three. (kopf imports the Kubernetes client whenever it is
installed, as in the dev venv: the login falls back to it outside a cluster. The image's
lock must not have it.) (That the lock has everything it does need is checked where
only the lock is installed: the Dockerfile's build-time import and `make images`.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_OPERATOR = """
import json, sys
import flotilla_operator.__main__, flotilla_operator.handlers, flotilla_operator.crd  # the image's entry point
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_importing_the_operator_loads_no_web_or_database_framework() -> None:
    result = subprocess.run([sys.executable, "-c", IMPORT_OPERATOR], capture_output=True, text=True, timeout=120,
                            check=True)
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    heavy = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "httpx"}
    assert not heavy & loaded, f"the operator loads {sorted(heavy & loaded)}"


def test_the_operator_image_lock_has_no_web_database_or_kubernetes_client_package() -> None:
    locked = {line.split("==")[0] for line in (ROOT / "requirements" / "operator.txt").read_text().splitlines()
              if "==" in line and not line.startswith(" ")}
    assert not locked & {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "httpx", "kubernetes"}
