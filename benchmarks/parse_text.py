"""Benchmark `katib-metrics parse` on big TEXT logs against Katib's algorithm in Python and `grep -c`.

    python benchmarks/parse_text.py                          # every case on 200 MiB logs, about 6 minutes
    python benchmarks/parse_text.py --size-mib 50 --cases dense-missing,varied --repeat 1   # iterate

Every contender runs as its own process in the same run, timed with wall-clock time and measured for
peak RSS with wait4(); results are reported as ratios (machines are noisy, ratios are what we compare), each
case's contenders alternating `--repeat` times, with the load average before and after.

Cases (issue #11: "≥ 2x the port for any -m set, on dense logs of at least 200 MB"):
  sparse          1 metric line in 50, `-m loss;accuracy` (also against `grep -c`)
  dense-all       `<RFC3339> epoch=N loss=X accuracy=Y` on every line, `-m loss;accuracy`
  dense-missing   the same log, `-m Validation-accuracy;loss;accuracy`: the first name never printed
  dense-every100  every line loss/accuracy, every 100th adds Validation-accuracy; all three asked for
  varied          batch lines (loss, accuracy), epoch lines adding Validation-accuracy and val_loss every
                  200 lines, warnings (some naming a metric) and progress lines in between; all three asked for

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
from collections.abc import Callable
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


def _stamp(n: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + n)) + f".{n % 1000000:06d}Z"


def _write(path: str, target: int, lines_of: Callable[[int, random.Random], list[str]], seed: int) -> None:
    rnd = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        written, n = 0, 0
        while written < target:
            lines = []
            for _ in range(5000):
                n += 1
                lines += lines_of(n, rnd)
            block = "\n".join(lines) + "\n"
            out.write(block)
            written += len(block)


def _dense(n: int, rnd: random.Random) -> list[str]:
    return [f"{_stamp(n)} epoch={n} loss={rnd.random():.6f} accuracy={rnd.random():.6f}"]


def _dense_every100(n: int, rnd: random.Random) -> list[str]:
    extra = f" Validation-accuracy={rnd.random():.6f}" if n % 100 == 0 else ""
    return [f"{_stamp(n)} epoch={n // 100} loss={rnd.random():.6f} accuracy={rnd.random():.6f}{extra}"]


VARIED_NOISE = [
    "{n}/1875 [==============================>......] - ETA: 12s",
    "WARNING:tensorflow:Callback method `on_train_batch_end` is slow compared to the batch time (batch time: 0.01s)",
    "Epoch {n}: val_loss did not improve from 0.31337",
    "I1122 13:47:08.{n:06d}  4821 trainer.py:211] Step {n}: throughput 1234.5 examples/sec",
]


def _varied(n: int, rnd: random.Random) -> list[str]:
    lines = [f"{_stamp(n)} step={n} loss={rnd.random():.6f} accuracy={rnd.random():.6f}"]
    if n % 200 == 0:
        lines.append(f"{_stamp(n)} epoch={n // 200} loss={rnd.random():.6f} accuracy={rnd.random():.6f} "
                     f"Validation-accuracy={rnd.random():.6f} val_loss={rnd.random():.6f}")
    if n % 4 == 0:
        lines.append(VARIED_NOISE[n // 4 % len(VARIED_NOISE)].format(n=n % 1000000))
    return lines


def write_dense(path: str, target: int) -> None:
    _write(path, target, _dense, 2)


LOGS: dict[str, Callable[[str, int], None]] = {
    "sparse": write_sparse,
    "dense": write_dense,
    "dense-every100": lambda path, target: _write(path, target, _dense_every100, 3),
    "varied": lambda path, target: _write(path, target, _varied, 4),
}
ALL = "Validation-accuracy;loss;accuracy"
CASES = {  # case: (log, -m names)
    "sparse": ("sparse", "loss;accuracy"),
    "dense-all": ("dense", "loss;accuracy"),
    "dense-missing": ("dense", ALL),
    "dense-every100": ("dense-every100", ALL),
    "varied": ("varied", ALL),
}


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
        return sum(chunk.count(b"\n") for chunk in iter(lambda: data.read(1 << 20), b""))


def _katib() -> list[str]:
    found = shutil.which("katib-metrics")
    return [found] if found else [sys.executable, "-m", "katib_metrics"]


def run_case(label: str, path: str, names: str, repeat: int) -> None:
    size = os.path.getsize(path) / (1 << 20)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n## {label}: {size:.0f} MiB, {count_lines(path):,} lines, -m '{names}' (load before {load})", flush=True)
    contenders = [
        ("katib-metrics parse", [*_katib(), "parse", "--output", "table", "-m", names, path]),
        ("katib-python (a)", [sys.executable, "-c", KATIB_PYTHON, path, names]),
    ]
    if label == "sparse":
        contenders.append(("grep -c", ["grep", "-c", "loss", path]))
    ratios, grep_ratios = [], []
    for _ in range(repeat):
        runs = [measure(name, argv) for name, argv in contenders]
        for timing in runs:
            print(f"  {timing.name:<22} {timing.seconds:8.2f} s  peak RSS {timing.peak_mib:8.1f} MiB   {timing.output}")
        ratios.append(runs[1].seconds / runs[0].seconds)
        if len(runs) > 2:
            grep_ratios.append(runs[0].seconds / runs[2].seconds)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    summary = f"  ours vs (a): {', '.join(f'{r:.2f}x' for r in ratios)} faster"
    if grep_ratios:
        summary += f"; ours vs grep -c: {', '.join(f'{r:.1f}x' for r in grep_ratios)} slower"
    print(f"{summary} (load after {load})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=200, help="size of each log (default 200)")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep the logs")
    parser.add_argument("--cases", default=",".join(CASES), help=f"which cases to run (default: {','.join(CASES)})")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of each case's contenders (default 2)")
    args = parser.parse_args()
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"--cases: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    folder = args.keep or tempfile.mkdtemp(prefix="katib-bench-")
    os.makedirs(folder, exist_ok=True)
    try:
        target = args.size_mib << 20
        for label in [case for case in CASES if case in args.cases.split(",")]:
            log, names = CASES[label]
            path = os.path.join(folder, f"{log}-{args.size_mib}.log")
            if not os.path.exists(path):
                started = time.perf_counter()
                LOGS[log](path, target)
                print(f"generated {path} in {time.perf_counter() - started:.0f} s", flush=True)
            run_case(label, path, names, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
