"""The sidecar when its spill file cannot be created (read-only root) or fills up mid-trial: real processes,
a real db-manager, peak RSS measured by a launcher (RUSAGE_CHILDREN), every row reported in order."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import get_observation_log

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

# Runs `katib-metrics collect ARGS` as a child and prints its peak RSS (bytes) on its last stderr line. With
# READ_ONLY set, creating any temporary file fails as on a read-only root filesystem; with FSIZE set, the
# child cannot write files beyond that many bytes (its spill file fills up, as a full volume would).
LAUNCHER = r"""
import ctypes, os, resource, signal, subprocess, sys
child = (
    "import errno, os, sys, tempfile\n"
    "if os.environ.get('READ_ONLY'):\n"
    "    def refuse(*args, **kwargs):\n"
    "        raise OSError(errno.EROFS, 'Read-only file system')\n"
    "    tempfile.TemporaryFile = refuse\n"
    "from katib_metrics.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)
def limit():
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a timed-out test leaves no sidecar behind
    if os.environ.get("FSIZE"):
        size = int(os.environ["FSIZE"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
status = subprocess.call([sys.executable, "-c", child, "collect", *sys.argv[1:]], preexec_fn=limit)
sys.stderr.write(f"\npeak_rss={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}\n")
raise SystemExit(status)
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


def completed_log(tmp_path: Path, lines: int) -> Path:
    """A metrics file of `lines` values of `accuracy`, and the marker of a training that completed."""
    work = tmp_path / "katib"
    work.mkdir()
    log = work / "metrics.log"
    with log.open("w") as out:
        out.writelines(f"accuracy={i}\n" for i in range(lines))
    (work / "7.pid").write_text("completed\n")
    return log


def collect(*args: str, timeout: float, **env: str) -> tuple[int, str, int]:
    """Exit status, stderr and peak RSS of a sidecar run."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=ROOT, text=True, capture_output=True,
                          timeout=timeout, env={**os.environ, **env})
    head, _, peak = proc.stderr.rpartition("peak_rss=")
    return proc.returncode, head, int(peak)


def test_without_a_spill_file_600_000_rows_stay_under_100_mib_and_all_arrive(tmp_path: Path,
                                                                                db: RunningServer) -> None:
    lines = 600_000
    log = completed_log(tmp_path, lines)
    status, err, peak = collect("-t", "trial-ro", "-m", "accuracy", "-s-db", db.address, "-path", str(log),
                                "--metrics-port", "0", timeout=120, READ_ONLY="1")
    assert status == 0, err[-3000:]
    assert "Read-only file system" in err
    assert peak < 100 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    values = [row.value for row in get_observation_log(db.address, "trial-ro")]
    assert len(values) == lines and values == [str(i) for i in range(lines)]


def test_a_spill_volume_that_fills_up_mid_trial_loses_nothing_and_does_not_hang(tmp_path: Path,
                                                                                 db: RunningServer) -> None:
    lines = 200_000
    log = completed_log(tmp_path, lines)
    status, err, peak = collect("-t", "trial-full", "-m", "accuracy", "-s-db", db.address, "-path", str(log),
                                "--metrics-port", "0", timeout=90, FSIZE=str(200_000))
    assert status == 0, err[-3000:]
    assert "File too large" in err  # the spill file did fill up
    assert "collection stopped early" not in err
    assert peak < 100 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    values = [row.value for row in get_observation_log(db.address, "trial-full")]
    assert len(values) == lines and values == [str(i) for i in range(lines)]


def test_without_a_spill_file_an_unreachable_db_manager_ends_the_sidecar_in_bounded_time(tmp_path: Path) -> None:
    log = completed_log(tmp_path, 600_000)
    with subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket(); "
                           "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True); time.sleep(120)"],
                          stdout=subprocess.PIPE, text=True) as holder:  # a port nobody serves gRPC on
        assert holder.stdout is not None
        port = holder.stdout.readline().strip()
        try:
            status, err, peak = collect("-t", "trial-down", "-m", "accuracy", "-s-db", f"127.0.0.1:{port}",
                                        "-path", str(log), "--metrics-port", "0", "--report-timeout", "3s",
                                        timeout=90, READ_ONLY="1")
        finally:
            holder.kill()
    assert status == 1, err[-3000:]
    assert peak < 100 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
