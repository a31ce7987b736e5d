"""Optional py-spy flame graphs of service processes during a measured window.

py-spy is not a dependency of the project: ``--profile DIR`` uses it when it is installed
(``pip install py-spy``) and says so when it is not. It samples without pausing the
process (``--nonblocking``), from outside, so the figures of the window it records are
disturbed only by the sampler's own CPU on the same cores.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

#: Samples per second: enough for a readable flame graph in a 10-second window.
RATE = 200


def py_spy() -> str | None:
    """py-spy from this interpreter's environment or the PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def flame_graphs(out_dir: Path | None, label: str, pids: Mapping[str, int], seconds: int) -> Iterator[list[Path]]:
    """Record an SVG flame graph of each process for ``seconds`` (or until the block ends)."""
    binary = py_spy() if out_dir is not None else None
    if out_dir is None or binary is None or not pids:
        if out_dir is not None and binary is None:
            print("  (no flame graphs: py-spy is not installed; `pip install py-spy`)", flush=True)
        yield []
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    recorders: list[tuple[Path, subprocess.Popen[bytes]]] = []
    for name, pid in pids.items():
        svg = out_dir / f"{label}-{name}.svg"
        recorders.append((svg, subprocess.Popen(  # noqa: S603 - our arguments
            [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE),
             "--nonblocking", "--format", "flamegraph", "--output", str(svg)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    written: list[Path] = []
    try:
        yield written
    finally:
        for svg, recorder in recorders:
            try:
                recorder.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
            if svg.exists():
                written.append(svg)
        for svg in written:
            print(f"  flame graph: {svg}", flush=True)
