"""Peak memory of one `katib-metrics` command, run as users run it.

The command is the only child of a small Python launcher that reports `RUSAGE_CHILDREN`'s peak RSS: a child
forked straight from the big pytest process would start with pytest's peak as its own (Linux keeps the
high-water mark across exec). Its stdout goes to a file (a JSON document may be large), its stderr is kept.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ("import resource, subprocess, sys\n"
            "with open(sys.argv[1], 'w') as out:\n"
            "    code = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
            "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


@dataclass(frozen=True)
class Measured:
    code: int
    stdout: str
    stderr: str
    peak_mib: float


def measured(tmp: Path, *args: str, timeout: float = 300) -> Measured:
    """`katib-metrics ARGS` in its own process: exit status, stdout, stderr and peak RSS in MiB."""
    out = tmp / "measured.stdout"
    command = [sys.executable, "-c", LAUNCHER, str(out), sys.executable, "-m", "katib_metrics", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    code, peak_kib = map(int, done.stdout.split())
    return Measured(code, out.read_text(), done.stderr, peak_kib / 1024)
