"""Benchmark `katib-metrics parse` on big TEXT logs against Katib's algorithm in Python and `grep -c`.

    python benchmarks/parse_text.py                # two 1 GiB logs (sparse, dense), about 5 minutes
    python benchmarks/parse_text.py --size-mib 200 # quicker

Every contender runs as its own process in the same run, timed with wall-clock time and measured for
peak RSS with wait4(); results are reported as ratios (machines are noisy, ratios are what we compare).

(a) "katib-python": a straightforward per-line port of Katib's file collector (reference §2.3-2.4), as the
    issue defines it: read the whole file, split it on newlines, take the first space-separated token as an
    RFC3339 time stamp if it parses, run the default filter on every line and keep the MetricLogs of the
    wanted names (no substring pre-filter).
(b) "grep -c": `grep -c loss FILE`, the floor for touching every byte.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

KATIB_PYTHON = r'''
import re, sys
from datetime import datetime
FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)", re.ASCII)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{1,2}:\d{2}:\d{2}([.,]\d+)?(Z|[+-]\d{2}:\d{2})")
names = set(sys.argv[2].split(";"))
logs = []
with open(sys.argv[1], "rb") as f:
    content = f.read().decode("utf-8", "replace")
for line in content.split("\n"):
    stamp = "0001-01-01T00:00:00Z"
    token = line.split(" ", 1)
    if len(token) == 2 and RFC3339.fullmatch(token[0]):
        stamp = token[0]
    for match in FILTER.findall(line):
        if match[0].strip() in names:
            logs.append((stamp, match[0].strip(), match[1].strip()))
print(len(logs))
'''

NOISE = [
    "I1122 13:47:{s:02d}.{us:06d}  4821 trainer.py:211] Step {n}: throughput 1234.{us} examples/sec on 8 devices",
    "WARNING:tensorflow:Callback method `on_train_batch_end` is slow compared to the batch time (batch time: 0.01s)",
    "{n}/1875 [==============================>......] - ETA: 12s - batch {n} processed by worker-{s}",
    "DEBUG data_loader.py:88 prefetch queue size {s} of 64, shard {n} opened from /data/train-{us:06d}.tfrecord",
    "INFO:root:Saving checkpoint to /tmp/model/ckpt-{n} (global_step={n}) with optimizer state",
]


def write_sparse(path: str, target: int) -> None:
    rnd = random.Random(1)
    with open(path, "w", encoding="utf-8") as out:
        written, n = 0, 0
        while written < target:
            lines = []
            for _ in range(5000):
                n += 1
                if n % 50 == 0:
                    lines.append(f"2024-03-04T01:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000000:06d}Z epoch={n // 50} "
                                 f"loss={rnd.random():.6f} accuracy={rnd.random():.6f}")
                else:
                    lines.append(rnd.choice(NOISE).format(s=n % 60, us=n % 1000000, n=n))
            block = "\n".join(lines) + "\n"
            out.write(block)
            written += len(block)


def write_dense(path: str, target: int) -> None:
    rnd = random.Random(2)
    with open(path, "w", encoding="utf-8") as out:
        written, n = 0, 0
        start = 1_700_000_000
        while written < target:
            lines = []
            for _ in range(5000):
                n += 1
                second = start + n
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                lines.append(f"{stamp}.{n % 1000000:06d}Z epoch={n} loss={rnd.random():.6f} "
                             f"accuracy={rnd.random():.6f}")
            block = "\n".join(lines) + "\n"
            out.write(block)
            written += len(block)


@dataclass
class Timing:
    name: str
    seconds: float
    peak_mib: float
    output: str


def measure(name: str, argv: list[str]) -> Timing:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed: {err}")
    return Timing(name, seconds, usage.ru_maxrss / 1024, out.strip().splitlines()[-1] if out.strip() else "")


def count_lines(path: str) -> int:
    with open(path, "rb") as data:
        return sum(1 for _ in data)


def run_case(label: str, path: str) -> list[Timing]:
    size = os.path.getsize(path) / (1 << 20)
    print(f"\n## {label}: {size:.0f} MiB, {count_lines(path):,} lines", flush=True)
    katib = [sys.executable, shutil.which("katib-metrics") or "katib-metrics"]
    if not shutil.which("katib-metrics"):
        katib = [sys.executable, "-m", "katib_metrics"]
    else:
        katib = [shutil.which("katib-metrics") or "katib-metrics"]
    runs = [
        measure("grep -c", ["grep", "-c", "loss", path]),
        measure("katib-metrics parse", [*katib, "parse", "--output", "table", "-m", "loss", "-m", "accuracy", path]),
        measure("katib-python (a)", [sys.executable, "-c", KATIB_PYTHON, path, "loss;accuracy"]),
    ]
    for timing in runs:
        print(f"  {timing.name:<22} {timing.seconds:8.2f} s  peak RSS {timing.peak_mib:8.1f} MiB   {timing.output}")
    ours, grep, naive = runs[1], runs[0], runs[2]
    print(f"  ours vs (a): {naive.seconds / ours.seconds:.1f}x faster; ours vs grep -c: "
          f"{ours.seconds / grep.seconds:.1f}x slower")
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of each log (default 1024)")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep the logs")
    parser.add_argument("--logs", default="sparse,dense", help="which logs to run (default: sparse,dense)")
    args = parser.parse_args()
    folder = args.keep or tempfile.mkdtemp(prefix="katib-bench-")
    os.makedirs(folder, exist_ok=True)
    try:
        target = args.size_mib << 20
        cases = {"sparse": write_sparse, "dense": write_dense}
        for label, writer in cases.items():
            if label not in args.logs.split(","):
                continue
            path = os.path.join(folder, f"{label}.log")
            if not os.path.exists(path) or os.path.getsize(path) < target:
                started = time.perf_counter()
                writer(path, target)
                print(f"generated {path} in {time.perf_counter() - started:.0f} s", flush=True)
            run_case(label, path)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
