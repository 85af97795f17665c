"""The sidecar as Katib runs it: real processes, Katib's exact flag sets, a real gRPC db-manager on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import get_observation_log
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.timestamps import parse_rfc3339

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "train.py"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


def sidecar(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "katib_metrics", "collect", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def training(command: str, marker_dir: Path) -> subprocess.Popen[bytes]:
    """Katib's wrapped command line, executed by a real `sh` (`$$` is the shell's own PID)."""
    return subprocess.Popen(["sh", "-c", f"{command} && echo completed > {marker_dir}/$$.pid"],
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def wait_for_scrape(port: int, key: str, at_least: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if scrape(port).get(key, 0) >= at_least:
                return
        except OSError:
            pass  # the sidecar is still starting its /metrics
        time.sleep(0.05)
    raise AssertionError(f"{key} did not reach {at_least} within {timeout}s")


def test_stdout_text_flag_set(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    started = time.time()
    collector = sidecar("-t", "trial-text", "-m", "accuracy;loss", "-o-type", "maximize", "-s-db", db.address,
                        "-path", str(log), "-format", "TEXT", "-p", "100ms")
    train = training(f"{sys.executable} {TRAIN} --epochs 5 --seconds 1.5 1>{log} 2>&1", tmp_path)
    assert train.wait(timeout=60) == 0
    status, err = finish(collector)
    assert status == 0, err
    rows = get_observation_log(db.address, "trial-text")
    printed = [line.split() for line in log.read_text().splitlines() if line.startswith("epoch=")]
    want = [(name, value) for words in printed for name, value in (w.split("=") for w in words[1:])]
    assert sorted((r.name, r.value) for r in rows) == sorted(want)
    assert len(rows) == 10
    for row in rows:  # no timestamp in the lines: the read time, within the run
        instant = parse_rfc3339(row.time_stamp)
        assert instant is not None and started - 1 <= instant.seconds <= time.time() + 1
    assert "Metrics reported: 10 rows" in err


def test_file_json_flag_set_keeps_the_lines_timestamps(tmp_path: Path, db: RunningServer) -> None:
    path = tmp_path / "katib" / "metrics.json"
    path.parent.mkdir()
    script = tmp_path / "train_json.py"
    script.write_text(
        "import json, sys, time\n"
        "with open(sys.argv[1], 'a') as out:\n"
        "    for step in range(4):\n"
        "        out.write(json.dumps({'loss': str(1 - step / 10), 'accuracy': step / 4,\n"
        "                              'timestamp': 1638422847.25 + step}) + '\\n')\n"
        "        out.flush(); time.sleep(0.2)\n")
    collector = sidecar("-t", "trial-json", "-m", "loss;accuracy", "-o-type", "minimize", "-s-db", db.address,
                        "-path", str(path), "-format", "JSON")
    assert training(f"{sys.executable} {script} {path}", path.parent).wait(timeout=60) == 0
    status, err = finish(collector)
    assert status == 0, err
    rows = get_observation_log(db.address, "trial-json", "loss")
    assert rows == [MetricLog(f"2021-12-02T05:27:{27 + i}.25Z", "loss", v)
                    for i, v in enumerate(["1.0", "0.9", "0.8", "0.7"])]
    assert [r.value for r in get_observation_log(db.address, "trial-json", "accuracy")] == [
        "0", "0.25", "0.5", "0.75"]


def test_tensorflow_event_directory(tmp_path: Path, db: RunningServer) -> None:
    events = tmp_path / "tfevent"
    events.mkdir()
    script = tmp_path / "train_tb.py"
    script.write_text(
        "import sys\nfrom tensorboardX import SummaryWriter\n"
        "w = SummaryWriter(sys.argv[1])\n"
        "for step in range(5):\n"
        "    w.add_scalar('accuracy', 0.5 + step / 10, step, walltime=1700000000.5 + step)\n"
        "    w.flush()\n"
        "w.close()\n")
    collector = sidecar("--trial_name", "trial-tb", "--metric_names", "accuracy", "--metrics_file_dir",
                        str(events), "--db_manager_server_addr", db.address, "--poll_interval", "1")
    assert training(f"{sys.executable} {script} {events}", events).wait(timeout=60) == 0
    status, err = finish(collector)
    assert status == 0, err
    rows = get_observation_log(db.address, "trial-tb")
    assert [(r.time_stamp, r.value) for r in rows] == [
        (f"2023-11-14T22:13:2{i}.5Z", v) for i, v in enumerate(["0.5", "0.6", "0.7", "0.8", "0.9"])]


def test_failed_training_still_reports_and_exits_zero(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    collector = sidecar("-t", "trial-failed", "-m", "accuracy", "-s-db", db.address, "-path", str(log),
                        "-p", "100ms")
    train = training(f"{sys.executable} {TRAIN} --epochs 5 --seconds 0.5 --fail-at 2 1>{log} 2>&1", tmp_path)
    assert train.wait(timeout=60) == 1
    status, err = finish(collector)
    assert status == 0, err
    assert len(get_observation_log(db.address, "trial-failed", "accuracy")) == 2
    assert "training failed" in err


def test_rotation_and_truncation_mid_run_lose_nothing(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    fifo = tmp_path / "end"
    os.mkfifo(fifo)
    port = free_port()
    collector = sidecar("-t", "trial-rot", "-m", "loss", "-s-db", db.address, "-path", str(log), "-p", "100ms",
                        "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    train = training(f"read x < {fifo}", tmp_path)
    key = "katib_collector_metric_values_total[('metric', 'loss'), ('trial', 'trial-rot')]"
    log.write_text("loss=1\nloss=2\n")
    wait_for_scrape(port, key, 2)
    log.rename(tmp_path / "metrics.log.1")  # rename rotation, then a new file
    log.write_text("loss=3\nloss=33\n")
    wait_for_scrape(port, key, 4)
    log.write_text("loss=4\n")  # truncated (shorter) and rewritten in place
    wait_for_scrape(port, key, 5)
    with log.open("a") as out:
        out.write("loss=5")  # unterminated: flushed at the true end
    fifo.write_text("done\n")
    assert train.wait(timeout=30) == 0
    status, err = finish(collector)
    assert status == 0, err
    assert [r.value for r in get_observation_log(db.address, "trial-rot")] == ["1", "2", "3", "33", "4", "5"]


def test_sigterm_mid_run_reports_what_was_collected(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    port = free_port()
    collector = sidecar("-t", "trial-term", "-m", "accuracy;loss", "-s-db", db.address, "-path", str(log),
                        "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    train = training(f"{sys.executable} {TRAIN} --epochs 1000 --seconds 1000 1>{log} 2>&1", tmp_path)
    try:
        wait_for_scrape(port, "katib_collector_metric_values_total[('metric', 'accuracy'), "
                        "('trial', 'trial-term')]", 2)
        collector.send_signal(signal.SIGTERM)
        status, err = finish(collector, timeout=30)
        assert status == 0, err
        rows = get_observation_log(db.address, "trial-term", "accuracy")
        assert len(rows) >= 2
        assert "terminated" in err
    finally:
        os.killpg(train.pid, signal.SIGKILL)
        train.wait(timeout=10)


def test_report_failure_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    log = tmp_path / "metrics.log"
    log.write_text("accuracy=0.5\n")
    (tmp_path / "4242.pid").write_text("completed\n")  # the training ended before the sidecar started
    collector = sidecar("-t", "trial-x", "-m", "accuracy", "-s-db", f"127.0.0.1:{free_port()}",
                        "-path", str(log), "--report-timeout", "1s")
    status, err = finish(collector)
    assert status == 1
    assert "UNAVAILABLE" in err and "trial-x" in err


def test_usage_errors_exit_2_without_a_traceback() -> None:
    status, err = finish(sidecar("-t", "x", "-m", "a", "-s-db", "h:1", "-path", "/x/m.log", "-f", "(bad"))
    assert status == 2
    assert "(bad" in err and "Traceback" not in err
