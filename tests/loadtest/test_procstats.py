"""CPU accounting of process trees: what a benchmark charges to a server must include
the time of its children, also of children that exited during the window (PostgreSQL's
backends come and go with connections)."""

from __future__ import annotations

import subprocess
import sys

from loadtest.procstats import CpuMeter

# The parent forks a child that burns CPU, reaps it, reports the child's CPU seconds, and
# then waits to be stopped: at the end of the window only the parent is alive.
PARENT = r"""
import subprocess, sys
sys.stdin.readline()
child = subprocess.run([sys.executable, "-c",
    "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.3: pass\n"
    "print(time.process_time())"], capture_output=True, text=True, check=True)
print(child.stdout.strip(), flush=True)
sys.stdin.readline()
"""


def test_cpu_of_children_that_exited_is_charged_to_the_tree() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdin is not None
    assert parent.stdout is not None
    try:
        meter = CpuMeter({"parent": parent.pid})
        meter.start()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child_cpu_seconds = float(parent.stdout.readline())
        used = meter.stop()
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)
    # Clock ticks are 10 ms; the child's startup is CPU time too, so the tree used at least this.
    assert used["parent"] >= child_cpu_seconds - 0.02
    assert meter.ms_per_request(100)["parent"] == 1000 * used["parent"] / 100
