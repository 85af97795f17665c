"""Benchmark: our event-file reader vs tensorboard's EventAccumulator used as Katib uses it.

Generates (once, cached in --workdir) one event file per style and shape with N scalar events.
Styles:

- `simple`: `simple_value` summaries, the layout tensorboardX / torch `add_scalar` write;
- `tensor`: v2 tensor summaries with scalars-plugin metadata, the layout of tensorboard's
  `Writer.add_scalar` (and TF2 `tf.summary.scalar`).

Shapes (`-m loss` is asked for in each):

- `one-tag`: `loss` at every step;
- `loop`: a training loop: `loss`, `lr`, `grad_norm` at every step, `val/accuracy` every 100th;
- `shuffled`: one of five tags per step, in random order: no block of records repeats, so nothing
  is read by columns (`parsers.tfruns`); the per-record paths' speed.

The layouts are checked against the real writers' bytes before generating. Each reader then runs
in its own process pinned to one CPU, and reports events/s (wall and CPU) and peak RSS
(`ru_maxrss`; for a command, of this small process's only child, so the benchmark's own memory
is not counted):

- `ours`: the library reader (`read_event_dir`), every CRC verified, every MetricLog built;
- `table`, `json`: the command users run, `katib-metrics parse -m loss --output table|json DIR`, start-up
  and output included (its stdout goes to /dev/null);
- `ea`: the accumulator loads everything (`size_guidance` 0), then values are rendered as Katib does.

Events/s count every scalar event in the file (all tags), whatever was asked for.

Usage: python benchmarks/parse_tfevent.py [--events 1000000] [--workdir DIR] [--readers ours,table,json,ea]
                                          [--shapes one-tag,loop,shuffled]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
TAG = "loss"
T0 = 1_700_000_000.0
STYLES = ("simple", "tensor")
SHAPES = ("one-tag", "loop", "shuffled")
SHUFFLED_TAGS = ("loss", "lr", "accuracy", "grad_norm", "val/accuracy")


def _frame(data: bytes) -> bytes:
    from katib_metrics.parsers.tfrecord import masked_crc32c

    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _event(style: str, step: int, tag: str = TAG) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import summary_v2

    value = _value(step)
    wall_time = T0 + step * 0.001
    if style == "simple":
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    else:
        summary = summary_v2.scalar_pb(tag, value)
        summary.value[0].metadata.data_class = summary_pb2.DATA_CLASS_SCALAR  # as Writer.add_scalar sets it
    return bytes(event_pb2.Event(wall_time=wall_time, step=step, summary=summary).SerializeToString())


def _real_writer_record(style: str) -> bytes:
    """The record the real writer produces for step 0 (to check the generated layout)."""
    from katib_metrics.parsers.tfrecord import scan_records

    with tempfile.TemporaryDirectory() as logdir:
        if style == "simple":
            import tensorboardX

            writer: Any = tensorboardX.SummaryWriter(logdir)
            writer.add_scalar(TAG, _value(0), 0, walltime=T0)
        else:
            from tensorboard.summary import Writer

            writer = Writer(logdir)
            writer.add_scalar(TAG, _value(0), 0, wall_time=T0)
        writer.close()
        [name] = [n for n in os.listdir(logdir) if "tfevents" in n]
        with open(os.path.join(logdir, name), "rb") as file:
            return scan_records(file.read()).records[-1]


def _value(step: int) -> float:
    """A decaying, noisy loss: a million distinct values."""
    return math.exp(-step / 100_000) + 0.01 * math.sin(step)


def _tags(shape: str, events: int) -> Iterator[tuple[int, str]]:
    """(step, tag) of each of `events` scalar events, in file order."""
    rng = random.Random(0)
    step = 0
    while events > 0:
        if shape == "one-tag":
            tags: tuple[str, ...] = (TAG,)
        elif shape == "loop":
            tags = ("loss", "lr", "grad_norm", "val/accuracy") if step % 100 == 99 else ("loss", "lr", "grad_norm")
        else:
            tags = (rng.choice(SHUFFLED_TAGS),)
        for tag in tags[:events]:
            yield step, tag
        events -= len(tags)
        step += 1


def generate(path: pathlib.Path, style: str, shape: str, events: int) -> None:
    if _event(style, 0) != _real_writer_record(style):
        raise SystemExit(f"generated {style} layout differs from the real writer's; update the benchmark")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as file:
        batch: list[bytes] = []
        for step, tag in _tags(shape, events):
            batch.append(_frame(_event(style, step, tag)))
            if len(batch) == 10_000:
                file.write(b"".join(batch))
                batch.clear()
        file.write(b"".join(batch))
    partial.rename(path)


def measure_ours(path: pathlib.Path) -> int:
    from katib_metrics.parsers.model import CollectorSpec
    from katib_metrics.parsers.tfevent import read_event_dir

    count = 0
    for _ in read_event_dir(path.parent, CollectorSpec(metric_names=(TAG,))):
        count += 1
    return count


def measure_ea(path: pathlib.Path) -> int:
    """Katib's tfevent_loader: EventAccumulator per file (it loads every tag), then for the asked-for
    tag, tensors first, then scalars, str() of each."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    accumulator = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    accumulator.Reload()
    count = 0
    tags = accumulator.Tags()
    for tag in [tag for tag in tags[ea.TENSORS] if tag == TAG]:
        for event in accumulator.Tensors(tag):
            str(tensor_util.make_ndarray(event.tensor_proto))
            count += 1
    for tag in [tag for tag in tags[ea.SCALARS] if tag == TAG]:
        for event in accumulator.Scalars(tag):
            str(event.value)
            count += 1
    return count


def measure_command(output: str, path: pathlib.Path) -> int:
    """`katib-metrics parse` as this process's only child (stdout to /dev/null); the values it recorded."""
    command = [sys.executable, "-m", "katib_metrics", "parse", "-m", TAG, "--output", output, str(path.parent)]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    found = re.search(r"(\d+) values recorded", done.stderr)  # the rows of `loss`
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr}")
    return int(found.group(1))


def child(reader: str, path: pathlib.Path) -> None:
    """One reader in this fresh process, pinned to one CPU (a command runs as its only child, on that CPU)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    command = reader in ("table", "json")
    who = resource.RUSAGE_CHILDREN if command else resource.RUSAGE_SELF
    before = resource.getrusage(who)
    wall = time.perf_counter()
    measure = {"ours": measure_ours, "ea": measure_ea}.get(reader)
    count = measure(path) if measure is not None else measure_command(reader, path)
    wall = time.perf_counter() - wall
    after = resource.getrusage(who)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_kib = after.ru_maxrss
    print(json.dumps({"events": count, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak_kib / 1024}))


def run_child(reader: str, path: pathlib.Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    command = [sys.executable, __file__, "--child", reader, str(path)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="scalar events per file (default 1,000,000)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "tfevent-bench")
    parser.add_argument("--readers", default="ours,table,json,ea",
                        help="comma-separated: ours, table, json, ea (default all)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated: {', '.join(SHAPES)}")
    parser.add_argument("--child", nargs=2, metavar=("READER", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], pathlib.Path(args.child[1]))
        return

    print(f"{'shape':9} {'style':7} {'reader':6} {'rows':>9} {'ev/s wall':>11} {'ev/s cpu':>11} {'peak RSS':>10}")
    for shape in args.shapes.split(","):
        for style in STYLES:
            name = f"{style}-{args.events}" if shape == "one-tag" else f"{shape}-{style}-{args.events}"
            path = args.workdir / name / "events.out.tfevents.1.bench"
            if not path.exists():
                generate(path, style, shape, args.events)
            speeds: dict[str, float] = {}
            for reader in args.readers.split(","):
                result = run_child(reader, path)
                speeds[reader] = args.events / result["cpu_s"]
                print(f"{shape:9} {style:7} {reader:6} {result['events']:>9,} {args.events / result['wall_s']:>11,.0f}"
                      f" {speeds[reader]:>11,.0f} {result['peak_rss_mib']:>7.0f} MiB", flush=True)
            for reader in [name for name in speeds if name != "ea" and "ea" in speeds]:
                print(f"{shape:9} {style:7} {reader} vs ea (cpu): {speeds[reader] / speeds['ea']:.1f}x", flush=True)
    print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    main()
