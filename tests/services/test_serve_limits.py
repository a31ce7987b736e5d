"""Process limits a served service sets for itself: enough descriptors for its clients."""

from __future__ import annotations

import resource
import subprocess
import sys


def test_soft_open_files_limit_is_raised_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(256, hard)

    def lower() -> None:  # the common default of a container or a login shell, or lower
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))

    code = ("import resource; from services.serve import raise_open_files_limit; "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], raise_open_files_limit())")
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=lower, capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[0]) == lowered
    assert int(out[1]) == (hard if hard != resource.RLIM_INFINITY else max(lowered, 1_048_576))
