"""Benchmark: early-stopping decision latency, from the line that satisfies the rules to the training's SIGTERM.

Each round runs the real sidecar (`katib-metrics collect` with `-stop-rule accuracy;0.5;less;3`) against
our local db-manager and a SetTrialStatus recorder on loopback, and a training in Katib's `sh -c` wrapper
(reference §4.5) whose accuracy stalls below 0.5. The training notes the wall time just before it writes
each line, and its SIGTERM handler notes when the signal arrived; the latency is the difference for the
3rd line, the one that completes the rule. It includes inotify, the read, the parse, the rule check, the
marker write, the process-table scan and signal delivery. The sidecar's own log gives the part from its
decision to `SIGTERM sent`.

Usage: python benchmarks/earlystop_latency.py [ROUNDS]      (default: 20)
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]

TRAIN = """\
import json, os, signal, sys, time
record = sys.argv[1]
def on_term(signum, frame):
    with open(os.path.join(record, "term"), "w") as out:
        out.write(json.dumps({"at": time.time()}))
    os._exit(143)
signal.signal(signal.SIGTERM, on_term)
for step, acc in enumerate([0.30, 0.35, 0.40] + [0.40] * 600, 1):
    with open(os.path.join(record, "written"), "a") as out:
        out.write(f"{time.time()!r}\\n")
    print(f"epoch={step} accuracy={acc:.2f} loss={1 - acc:.2f}", flush=True)
    time.sleep(0.2)
"""

DECIDED = re.compile(r"SIGTERM sent to \d+ process\(es\) \[[\d, ]*\], ([\d.]+) ms after the decision")


class Recorder(api_pb2_grpc.EarlyStoppingServicer):
    def __init__(self) -> None:
        self.trials: list[str] = []

    def SetTrialStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.trials.append(request.trial_name)
        return api_pb2.SetTrialStatusReply()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(port: int, sidecar: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sidecar.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("the sidecar did not start")


def one_round(tmp: Path, db: str, earlystop: str, n: int) -> tuple[float, float]:
    work = tmp / f"round{n}"
    record = work / "record"
    record.mkdir(parents=True)
    (work / "train.py").write_text(TRAIN)
    log, port = work / "metrics.log", free_port()
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "katib_metrics", "collect", "-t", f"bench-{n}", "-m", "accuracy;loss",
         "-o-type", "maximize", "-s-db", db, "-path", str(log), "-format", "TEXT", "-p", "100ms",
         "-stop-rule", "accuracy;0.5;less;3", "-s-earlystop", earlystop, "--metrics-port", str(port),
         "--metrics-address", "127.0.0.1"], cwd=ROOT, text=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    wait_up(port, sidecar)
    pid_file = f"{work}/$$.pid"
    wrapped = (f"{sys.executable} {work / 'train.py'} {record} 1>{log} 2>&1 || if test -f {pid_file} && "
               f"[ $(head -n 1 {pid_file}) = early-stopped ]; then echo Early Stopped; else exit 1; fi && "
               f"echo completed > {pid_file}")
    shell = subprocess.run(["sh", "-c", wrapped], capture_output=True, text=True, timeout=60)
    _, err = sidecar.communicate(timeout=60)
    if shell.returncode != 0 or sidecar.returncode != 0:
        raise SystemExit(f"round {n} failed: shell {shell.returncode}, sidecar {sidecar.returncode}\n{err}")
    written = [float(line) for line in (record / "written").read_text().split()]
    term = json.loads((record / "term").read_text())["at"]
    decided = DECIDED.search(err)
    return term - written[2], float(decided.group(1)) / 1000 if decided else float("nan")


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 20
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_EarlyStoppingServicer_to_server(recorder, server)  # type: ignore[no-untyped-call]
    earlystop = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    with tempfile.TemporaryDirectory() as tmp:
        db = serve("127.0.0.1:0", Path(tmp) / "bench.db")
        try:
            results = [one_round(Path(tmp), db.address, earlystop, n) for n in range(rounds)]
        finally:
            db.stop(grace=1)
            server.stop(grace=None)
    assert len(recorder.trials) == rounds, recorder.trials
    for label, values in (("line written -> SIGTERM received", [r[0] for r in results]),
                          ("decision -> SIGTERM sent (sidecar log)", [r[1] for r in results])):
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        print(f"{label:40s} n={len(ms)} min {ms[0]:.1f} ms, median {statistics.median(ms):.1f} ms, "
              f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
