"""What a service loads: the gateway keeps no data, so it never loads SQLAlchemy or asyncpg
(about 20 MB of resident memory per replica, and the gateway is the most replicated)."""

from __future__ import annotations

import subprocess
import sys

SERVE_GATEWAY = """
import sys
import services.cli  # what `flotilla serve` imports first
from services.gateway.app import create_app
from services.kit.errors import classify_unexpected
create_app()
classify_unexpected(ConnectionRefusedError(111, "refused"), "rid", 5)  # the error path too
loaded = sorted(m for m in ("sqlalchemy", "asyncpg", "alembic", "websockets") if m in sys.modules)
print("loaded:" + ",".join(loaded))
"""


def test_serving_the_gateway_loads_no_database_library() -> None:
    result = subprocess.run([sys.executable, "-c", SERVE_GATEWAY], capture_output=True, text=True, timeout=120,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "loaded:"


def test_a_service_with_a_database_still_maps_its_errors() -> None:
    code = ("from services.tasks.app import create_app; from services.tasks.settings import TasksSettings; "
            "import sqlalchemy.exc as e; app = create_app(TasksSettings()); "
            "print(e.IntegrityError in app.exception_handlers)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "True"  # a unique key violated is still a 409
