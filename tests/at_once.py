"""Test helper: run the same Python code in several fresh processes, started together."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

_WAIT = (
    "import sys, time\n"
    "_start = float(sys.argv.pop(1))\n"
    "while time.time() < _start:\n"
    "    time.sleep(0.0002)\n"
)


def run_at_once(code: str, args: Sequence[str], processes: int, lead: float = 1.5) -> list[str]:
    """Run `code` (with `args` as its sys.argv[1:]) in `processes` interpreters that
    each wait, once imported, for one moment `lead` seconds from now and then go at
    once; return each one's output (stdout and stderr), in start order."""
    start = f"{time.time() + lead}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WAIT + code, start, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(processes)
    ]
    return [proc.communicate(timeout=120)[0] for proc in procs]
