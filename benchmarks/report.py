"""Benchmark: how long a report takes from `DBManagerReporter.report()` to the last acknowledgement.

Starts our local db-manager on 127.0.0.1:0 over a fresh SQLite file and reports logs of several sizes
(one metric line = two rows sharing a time stamp, as a typical `loss=... accuracy=...` line gives),
then reads them back with GetObservationLog. Prints one line per size.

Usage: python benchmarks/report.py [ROWS ...]      (default: 1000 20000 100000)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from katib_metrics.collector.dbmanager.server import serve
from katib_metrics.collector.report import DBManagerReporter, get_observation_log
from katib_metrics.parsers.model import MetricLog


def make_logs(rows: int) -> list[MetricLog]:
    logs = []
    for i in range(rows // 2):
        stamp = f"2024-03-04T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
        logs += [MetricLog(stamp, "loss", repr(1 / (i + 1))), MetricLog(stamp, "accuracy", repr(i / rows))]
    return logs


def main(argv: list[str]) -> None:
    sizes = [int(arg) for arg in argv] or [1000, 20_000, 100_000]
    with tempfile.TemporaryDirectory() as tmp:
        server = serve("127.0.0.1:0", Path(tmp) / "bench.db")
        try:
            with DBManagerReporter(server.address) as reporter:
                reporter.report("warm-up", make_logs(10))
                for size in sizes:
                    logs = make_logs(size)
                    start = time.perf_counter()
                    result = reporter.report(f"trial-{size}", logs)
                    reported = time.perf_counter() - start
                    start = time.perf_counter()
                    back = get_observation_log(server.address, f"trial-{size}")
                    read = time.perf_counter() - start
                    assert len(back) == len(logs) == result.rows
                    print(
                        f"{len(logs):>7} rows: report {reported:6.3f} s in {result.requests} requests "
                        f"({len(logs) / reported:8.0f} rows/s), read back {read:6.3f} s"
                    )
        finally:
            server.stop(None)


if __name__ == "__main__":
    main(sys.argv[1:])
