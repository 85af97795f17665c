"""Benchmark: the real sidecar following a training that writes 10,000 metric lines/s, reporting to a db-manager.

Three real processes, as in a pod with Katib's StdOut collector:

* `katib-metrics db-manager` on a free loopback port, over a fresh SQLite file;
* the training, Katib's wrapped command line run by `sh`: a writer printing `--rate` lines per second
  (`epoch=E step=N loss=L written=T`, T the wall-clock time of the write) for `--seconds`, its output
  redirected to the metrics file, then `echo completed > DIR/$$.pid`;
* `katib-metrics collect` with Katib's StdOut/TEXT flags (`-t -m -o-type -s-db -path -format TEXT`) plus
  `--metrics-port`.

Measured: the sidecar's CPU (user+system from /proc through psutil, over the writing period) as a share
of one core, its peak RSS (VmHWM), the staleness of `/metrics` (polled `--poll-hz` times a second: poll
time minus the write time of the newest `written` value visible; an upper bound of that line's
written → visible latency), and training exit → report acknowledged (to the sidecar's `Metrics reported`
log line, written when the db-manager acknowledged the last row; also to the sidecar's exit). The row count stored
in the db-manager's SQLite file is checked against what was written (nothing lost, nothing duplicated).

Usage: python benchmarks/sidecar.py [--seconds 60] [--rate 10000] [--poll-hz 10] [--threads] [--stall S]
       [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
TRIAL = "bench-trial"

WRITER = r'''
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
out = sys.stdout
start = time.time()
written = 0
while True:
    now = time.time()
    elapsed = now - start
    if elapsed >= seconds:
        break
    due = int(rate * elapsed) - written
    if due > 0:
        out.write("".join(f"epoch={(written + i) // 10000} step={written + i} loss={1 / (written + i + 1):.6f} "
                          f"written={now:.6f}\n" for i in range(due)))
        out.flush()
        written += due
    time.sleep(0.005)
print(f"wrote {written} lines", file=sys.stderr, flush=True)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def newest_written(port: int) -> float | None:
    """The `katib_collector_metric_latest{metric="written"}` value on the sidecar's /metrics, if any."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("katib_collector_metric_latest{") and 'metric="written"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


@dataclass
class Samples:
    staleness: list[float] = field(default_factory=list)
    peak_rss: int = 0
    errors: int = 0
    ticks: dict[int, int] = field(default_factory=dict)  # each thread's CPU ticks when last seen alive


def sample(sidecar: psutil.Process, metrics_port: int, period: float, stop: threading.Event,
           samples: Samples) -> None:
    """Poll /metrics and the sidecar's memory until `stop`."""
    while not stop.wait(period):
        try:
            value = newest_written(metrics_port)
            if value is not None:
                samples.staleness.append(time.time() - value)
            samples.peak_rss = max(samples.peak_rss, sidecar.memory_info().rss)
            samples.ticks.update(thread_ticks(sidecar.pid))
        except (OSError, psutil.Error):
            samples.errors += 1


class ExitWatch:
    """The moment a process exits, seen through a pidfd by a thread of its own (the measuring thread is busy)."""

    def __init__(self, pid: int) -> None:
        self._fd = os.pidfd_open(pid)
        self._at = 0.0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        select.select([self._fd], [], [], 600)
        self._at = time.monotonic()

    def when(self) -> float:
        self._thread.join(600)
        os.close(self._fd)
        return self._at


def stall(pid: int, after: float, seconds: float) -> None:
    """Freeze the sidecar (SIGSTOP) for `seconds`, `after` seconds into the run: a node under pressure."""
    time.sleep(after)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def peak_rss(pid: int) -> int:
    """VmHWM: the kernel's own peak resident set size of `pid`, in bytes (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def thread_ticks(pid: int) -> dict[int, int]:
    """CPU clock ticks (user+system) of each thread of `pid`, from /proc/PID/task/TID/stat."""
    ticks: dict[int, int] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process is gone
        return ticks
    for task in tasks:
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


def settled_threads(pid: int, timeout: float = 10.0) -> dict[int, int]:
    """`thread_ticks` once the sidecar has started all its threads (the set unchanged for 0.5 s), so
    that the per-thread figures count the run and not the threads' start-up."""
    deadline = time.monotonic() + timeout
    ticks = thread_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = thread_ticks(pid)
        if now.keys() == ticks.keys():
            return now
        ticks = now
    return ticks


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by native id, from `py-spy dump` (empty when py-spy is not installed)."""
    try:
        dump = subprocess.run(["py-spy", "dump", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names: dict[int, str] = {}
    for line in dump.splitlines():
        if line.startswith("Thread ") and '"' in line:
            names[int(line.split()[1])] = line.split('"')[1]
    return names


def per_thread(before: dict[int, int], after: dict[int, int], names: dict[int, str],
               seconds: float) -> dict[str, float]:
    """Each thread's CPU over the writing period as a share of one core (%), busiest first."""
    hertz = os.sysconf("SC_CLK_TCK")
    shares = {f"{names.get(tid, 'native')}/{tid}": 100 * (ticks - before.get(tid, 0)) / hertz / seconds
              for tid, ticks in after.items()}
    return {name: round(share, 1) for name, share in sorted(shares.items(), key=lambda kv: -kv[1]) if share}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def acknowledged_after(reported: list[str], exited: float) -> float | None:
    """Seconds from the training's exit to the sidecar's `Metrics reported` log line (logged on the ack)."""
    if not reported:
        return None
    stamp = reported[-1].split(" INFO ", 1)[0]  # Python logging's asctime: local time, milliseconds
    logged = time.mktime(time.strptime(stamp.split(",")[0], "%Y-%m-%d %H:%M:%S")) + int(stamp[-3:]) / 1000
    return round(logged - exited, 3)


def stored_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM observation_logs WHERE trial_name = ?", (TRIAL,)).fetchone()
    return int(count)


def run(options: argparse.Namespace, workdir: Path) -> dict[str, object]:
    log, db, writer = workdir / "metrics.log", workdir / "observations.db", workdir / "writer.py"
    writer.write_text(WRITER)
    db_port, metrics_port = free_port(), free_port()
    python = [sys.executable, "-m", "katib_metrics"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    dbm = subprocess.Popen([*python, "db-manager", "--listen", f"127.0.0.1:{db_port}", "--db", str(db)],
                           cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(db_port)
        sidecar = subprocess.Popen(
            [*python, "collect", "-t", TRIAL, "-m", "loss;written", "-o-type", "minimize",
             "-s-db", f"127.0.0.1:{db_port}", "-path", str(log), "-format", "TEXT",
             "--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1"],
            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        wait_port(metrics_port)
        if options.profile:  # py-spy samples the GIL holder from outside; it slows the sidecar a little
            subprocess.Popen(["py-spy", "record", "--pid", str(sidecar.pid), "--format", "raw", "--threads", "--gil",
                              "-o", options.profile], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return measure(options, sidecar, metrics_port, log, writer, db, workdir)
    finally:
        dbm.terminate()
        dbm.wait(timeout=30)


def measure(options: argparse.Namespace, sidecar: subprocess.Popen[str], metrics_port: int, log: Path,
            writer: Path, db: Path, workdir: Path) -> dict[str, object]:
    watched = psutil.Process(sidecar.pid)
    samples, stop = Samples(), threading.Event()
    poller = threading.Thread(target=sample, args=(watched, metrics_port, 1 / options.poll_hz, stop, samples))
    ticks_before = settled_threads(sidecar.pid)
    cpu_before, started = cpu_seconds(watched), time.monotonic()
    training = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} {writer} {options.rate} {options.seconds} 1>{log} 2>&1 && "
                     f"echo completed > {workdir}/$$.pid"])
    poller.start()
    names = thread_names(sidecar.pid) if options.threads else {}  # every thread runs by now
    if options.stall:
        threading.Thread(target=stall, args=(sidecar.pid, options.seconds / 2, options.stall), daemon=True).start()
    training.wait()
    exited, exited_wall = time.monotonic(), time.time()
    gone = ExitWatch(sidecar.pid)
    cpu_during = cpu_seconds(watched) - cpu_before
    # The sidecar reports and stops its threads within ~0.1 s of the exit: threads gone by now keep the
    # ticks the poller saw last (at most one poll period short).
    ticks_after = {**samples.ticks, **thread_ticks(sidecar.pid)}
    stop.set()
    poller.join()
    hwm = peak_rss(sidecar.pid)
    _, err = sidecar.communicate(timeout=600)
    sidecar_gone = gone.when()
    written = int(log.read_text().rsplit("wrote ", 1)[1].split()[0])
    reported = [line for line in err.splitlines() if "Metrics reported" in line]
    return {
        "seconds": options.seconds,
        "rate": options.rate,
        "lines_written": written,
        "sidecar_exit_status": sidecar.returncode,
        "cpu_percent_of_one_core": round(100 * cpu_during / (exited - started), 1),
        "cpu_percent_by_thread": per_thread(ticks_before, ticks_after, names, exited - started),
        "peak_rss_mib": round(max(hwm, samples.peak_rss) / 2**20, 1),
        "staleness_ms_p50": round(1000 * statistics.median(samples.staleness), 1) if samples.staleness else None,
        "staleness_ms_p99": round(1000 * percentile(samples.staleness, 0.99), 1),
        "staleness_samples": len(samples.staleness),
        "exit_to_acknowledged_s": acknowledged_after(reported, exited_wall),
        "exit_to_sidecar_exit_s": round(sidecar_gone - exited, 3),
        "rows_stored": stored_rows(db),
        "rows_expected": 2 * written,
        "report_line": reported[-1].split(": ", 1)[-1] if reported else err[-2000:],
        "sidecar_log_tail": err.splitlines()[-4:],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the writer writes (60)")
    parser.add_argument("--rate", type=float, default=10_000, help="metric lines per second (10000)")
    parser.add_argument("--poll-hz", type=float, default=10.0, help="/metrics polls per second (10)")
    parser.add_argument("--threads", action="store_true", help="name the threads in the per-thread CPU "
                        "figures (asks py-spy for the names once, at the training's exit)")
    parser.add_argument("--stall", type=float, default=0.0, metavar="SECONDS",
                        help="freeze the sidecar this long half-way through (memory while a backlog builds)")
    parser.add_argument("--profile", metavar="FILE", help="record the sidecar with py-spy (raw format) here")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sidecar-") as tmp:
        result = run(options, Path(tmp))
    print(json.dumps(result, indent=2))
    return 0 if result["rows_stored"] == result["rows_expected"] and result["sidecar_exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
