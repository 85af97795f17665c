"""The diagnosis reads a bounded head of any input: time and peak memory measured on a large worst-case log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Every line holds both names in a style the default filter misses: the most work per line there can be.
LINE = b"2024-03-04T01:55:10Z step 1 - loss: 0.123 - accuracy: 0.9\n"
CHILD = """
import json, resource, sys, time
from katib_metrics.parsers.diagnosis import diagnose
from katib_metrics.parsers.model import CollectorSpec, FileFormat
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
found = diagnose(CollectorSpec(("accuracy", "loss")), FileFormat.TEXT, sys.argv[1], [])
print(json.dumps({"seconds": time.monotonic() - started, "before_kib": before,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "found": [d.to_dict() for d in found]}))
"""


def test_a_24_mib_log_is_diagnosed_from_its_head_in_bounded_time_and_memory(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("wb") as out:
        for _ in range(24):
            out.write(LINE * ((1 << 20) // len(LINE)))
    done = subprocess.run([sys.executable, "-c", CHILD, str(log)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert [d["cause"] for d in measured["found"]] == ["filter_mismatch", "filter_mismatch"]
    assert all("of the first 20000 lines of" in d["evidence"] for d in measured["found"])
    assert all(d["suggestion"]["values"] == 20000 for d in measured["found"])
    # About 1 s on a quiet machine; the head is at most 8 MiB, whatever the file's size.
    assert measured["seconds"] < 30
    assert measured["peak_kib"] - measured["before_kib"] < 40 * 1024
