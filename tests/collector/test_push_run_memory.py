"""`run` on a command that pushes its values (MetricsReporter) reads them back a batch at a time: 300,000 rows
stay under 100 MiB (they were read back in one GetObservationLog answer: 540 MiB with the embedded
db-manager). The command runs under a small launcher, since a child forked from pytest would start with
pytest's peak as its own."""

from __future__ import annotations

import sys
from pathlib import Path

from tests import peak

TRAIN = """
from katib_metrics import MetricsReporter
reporter = MetricsReporter()
for i in range(150_000):
    reporter.report({"loss": 1 / (i + 1), "accuracy": i / 150_000})
reporter.close()
"""


def test_pushed_values_are_counted_in_bounded_memory(tmp_path: Path) -> None:
    run = peak.measured(tmp_path, "run", "--db", str(tmp_path / "obs.db"), "--trial", "pushed", "-m", "accuracy;loss",
                        "--", sys.executable, "-c", TRAIN)
    assert run.code == 0, run.stderr
    table = [line.split() for line in run.stdout.splitlines()]
    assert table[1][0] == "accuracy" and table[1][-1] == "150000" and table[2][0] == "loss" and table[2][-1] == "150000"
    assert table[-1][-5:] == ["300000", "rows", "stored", "in", str(tmp_path / "obs.db")]
    assert run.peak_mib < 100, f"peak RSS {run.peak_mib:.0f} MiB"
