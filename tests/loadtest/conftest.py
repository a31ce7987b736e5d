"""What the load-test tests share: wrk, which `make test` installs (scripts/ensure-servers.sh)."""

from __future__ import annotations

import pytest

from loadtest.generators import ensure_wrk


@pytest.fixture
def wrk() -> str:
    """wrk's path. A missing wrk is a broken set-up, not a reason to skip: a skipped test proves nothing."""
    found = ensure_wrk()
    assert found is not None, "wrk is missing: run `make servers` (it installs wrk with apt-get)"
    return found
