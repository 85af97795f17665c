"""`run` on a command that pushes its values (MetricsReporter) reads them back a batch at a time: 300,000 rows
stay under 100 MiB (they were read back in one GetObservationLog answer: 540 MiB with the embedded
db-manager). The command runs under a small launcher, since a child forked from pytest would start with
pytest's peak as its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ("import resource, subprocess, sys\ncode = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'w'))"
            ".returncode\nprint(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
TRAIN = """
from katib_metrics import MetricsReporter
reporter = MetricsReporter()
for i in range(150_000):
    reporter.report({"loss": 1 / (i + 1), "accuracy": i / 150_000})
reporter.close()
"""


def test_pushed_values_are_counted_in_bounded_memory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-c", LAUNCHER, str(out), sys.executable, "-m", "katib_metrics", "run", "--db",
               str(tmp_path / "obs.db"), "--trial", "pushed", "-m", "accuracy;loss", "--", sys.executable, "-c", TRAIN]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)
    code, peak_kib = map(int, done.stdout.split())
    assert code == 0, done.stderr
    table = [line.split() for line in out.read_text().splitlines()]
    assert table[1][0] == "accuracy" and table[1][-1] == "150000" and table[2][0] == "loss" and table[2][-1] == "150000"
    assert table[-1][-5:] == ["300000", "rows", "stored", "in", str(tmp_path / "obs.db")]
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib // 1024} MiB"
