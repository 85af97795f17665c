"""Issue #4's acceptance at the process level: a huge file in bounded memory, a real Prometheus scraping the
sidecar, the PrometheusMetric kind end to end, and a db-manager that is down for the first 10 s."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import get_observation_log
from tests.collector.test_collect_integration import finish, free_port, scrape, sidecar, training, wait_for_scrape
from tests.prom_fixture import PrometheusServer, prometheus  # noqa: F401 - a fixture

MiB = 1 << 20


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


def held_training(tmp_path: Path) -> tuple[Path, Callable[[], int]]:
    """A training (Katib's wrapped `sh` line) that runs until `release()`; the test writes its metrics."""
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    proc = training(f"read x < {fifo}", tmp_path)

    def release() -> int:
        fifo.write_text("done\n")
        return proc.wait(timeout=30)

    return fifo, release


def peak_rss(pid: int) -> int:
    """VmHWM: the kernel's record of the process's largest resident set, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def noise_block(first_step: int) -> bytes:
    """1 MiB of whole lines: framework chatter with 8 metric lines (steps first_step..first_step+7) spread in."""
    noise = b"2024-03-04 01:55:08,123 INFO data loader worker 3: prefetching shard 00042 of 01024 ...\n"
    metrics = [f"epoch {first_step + i} accuracy={first_step + i}\n".encode() for i in range(8)]
    room = MiB - sum(len(m) for m in metrics)
    count, rest = divmod(room, len(noise))
    lines = [noise] * count
    for i, metric in enumerate(reversed(metrics)):
        lines.insert((7 - i) * count // 8, metric)
    if rest:
        lines.append(b"#" * (rest - 1) + b"\n")
    block = b"".join(lines)
    assert len(block) == MiB
    return block


@pytest.mark.slow
def test_a_2_gib_metrics_file_keeps_the_sidecar_under_100_mib(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    blocks = 2048
    with log.open("wb") as out:  # 2 GiB of real lines: the same 1 MiB pattern, steps counted on
        for index in range(blocks):
            out.write(noise_block(8 * index))
    assert log.stat().st_size == 2048 * MiB
    port = free_port()
    _, release = held_training(tmp_path)
    collector = sidecar("-t", "trial-huge", "-m", "accuracy", "-s-db", db.address, "-path", str(log),
                        "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    try:
        wait_for_scrape(port, "katib_collector_metric_values_total[('metric', 'accuracy'), "
                        "('trial', 'trial-huge')]", 8 * blocks, timeout=120)
        assert peak_rss(collector.pid) < 100 * MiB
    finally:
        assert release() == 0
    status, err = finish(collector, timeout=120)
    assert status == 0, err
    rows = get_observation_log(db.address, "trial-huge")
    assert len(rows) == 8 * blocks
    assert [row.value for row in rows] == [str(step) for step in range(8 * blocks)]


def test_a_real_prometheus_scrapes_the_sidecar_during_a_run(
        tmp_path: Path, db: RunningServer, prometheus: Callable[..., PrometheusServer]) -> None:  # noqa: F811
    log = tmp_path / "metrics.log"
    port = free_port()
    _, release = held_training(tmp_path)
    collector = sidecar("-t", "trial-prom", "-m", "accuracy;loss", "-o-type", "maximize", "-s-db", db.address,
                        "-path", str(log), "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    try:
        log.write_text("epoch=1 accuracy=0.5 loss=0.9\nepoch=2 accuracy=0.75 loss=0.5\n")
        server = prometheus([f"127.0.0.1:{port}"], interval="1s")
        latest = 'katib_collector_metric_latest{trial="trial-prom",metric="accuracy"}'
        assert [float(s["value"][1]) for s in server.wait_for(latest, timeout=30)] == [0.75]
        with log.open("a") as out:
            out.write("epoch=3 accuracy=0.7 loss=0.4\n")
        server.wait_for(f"{latest} == 0.7", timeout=30)
        best = server.query('katib_collector_metric_best{trial="trial-prom",metric="accuracy"}')
        assert [float(s["value"][1]) for s in best] == [0.75]
        lines = server.wait_for('katib_collector_lines_total{trial="trial-prom"} == 3', timeout=30)
        assert lines[0]["metric"]["job"] == "katib"
    finally:
        assert release() == 0
    status, err = finish(collector)
    assert status == 0, err
    assert [r.value for r in get_observation_log(db.address, "trial-prom", "accuracy")] == ["0.5", "0.75", "0.7"]


TRAINING_EXPOSITION = r'''
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
values = [float(v) for v in sys.argv[2:]]
state = {"value": None, "scrapes": 0}
cond = threading.Condition()
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with cond:
            body = "# TYPE accuracy gauge\n"
            if state["value"] is not None:
                body += f'accuracy{{split="val"}} {state["value"]}\n'
            body += "# TYPE loss gauge\nloss 0.25\n"
            state["scrapes"] += 1
            cond.notify_all()
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
for value in values:  # each value stays until the sidecar has scraped it twice
    with cond:
        state["value"] = value
        seen = state["scrapes"]
        if not cond.wait_for(lambda: state["scrapes"] >= seen + 2, timeout=30):
            sys.exit("the sidecar never scraped /metrics")
print("trained", flush=True)
'''


def test_prometheus_metric_kind_end_to_end(tmp_path: Path, db: RunningServer) -> None:
    script = tmp_path / "train_prom.py"
    script.write_text(TRAINING_EXPOSITION)
    port = free_port()
    collector = sidecar("-t", "trial-pm", "-m", "accuracy;loss", "-o-type", "maximize", "-s-db", db.address,
                        "--prometheus-url", f"http://127.0.0.1:{port}/metrics", "-path",
                        str(tmp_path / "metrics.log"), "-p", "100ms")
    train = training(f"{sys.executable} {script} {port} 0.5 0.625 0.75", tmp_path)
    assert train.wait(timeout=60) == 0
    status, err = finish(collector)
    assert status == 0, err
    assert [r.value for r in get_observation_log(db.address, "trial-pm", "accuracy")] == ["0.5", "0.625", "0.75"]
    assert [r.value for r in get_observation_log(db.address, "trial-pm", "loss")] == ["0.25"]


def test_a_db_manager_down_for_the_first_10_s_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    log = tmp_path / "metrics.log"
    db_port, port = free_port(), free_port()
    _, release = held_training(tmp_path)
    started = time.monotonic()
    collector = sidecar("-t", "trial-late", "-m", "loss", "-s-db", f"127.0.0.1:{db_port}", "-path", str(log),
                        "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    server: RunningServer | None = None
    try:
        with log.open("w") as out:  # more than one batch: the run-time reports meet the outage
            out.write("".join(f"step={i} loss={i}\n" for i in range(6000)))
        wait_for_scrape(port, "katib_collector_report_retries_total[('code', 'UNAVAILABLE'), "
                        "('trial', 'trial-late')]", 1)
        threading.Event().wait(max(10 - (time.monotonic() - started), 0))  # the outage itself lasts 10 s
        server = serve(f"127.0.0.1:{db_port}", tmp_path / "observations.db")
        with log.open("a") as out:
            out.write("".join(f"step={i} loss={i}\n" for i in range(6000, 6500)))
        wait_for_scrape(port, "katib_collector_metric_values_total[('metric', 'loss'), ('trial', 'trial-late')]",
                        6500)
    finally:
        assert release() == 0
    try:
        status, err = finish(collector)
        assert status == 0, err
        assert [r.value for r in get_observation_log(server.address, "trial-late")] == [
            str(i) for i in range(6500)]
        assert "nothing is lost" in err
    finally:
        server.stop(grace=1)


def test_the_sidecar_reports_during_the_run_not_only_at_exit(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    port = free_port()
    _, release = held_training(tmp_path)
    collector = sidecar("-t", "trial-early", "-m", "loss", "-s-db", db.address, "-path", str(log),
                        "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    try:
        with log.open("w") as out:
            out.write("".join(f"loss={i}\n" for i in range(5200)))
        wait_for_scrape(port, "katib_collector_reported_rows_total[('trial', 'trial-early')]", 5000)
        assert len(get_observation_log(db.address, "trial-early")) >= 5000  # while the training still runs
        assert psutil.pid_exists(collector.pid)
        assert scrape(port)["katib_collector_reports_total[('outcome', 'success'), ('trial', 'trial-early')]"] >= 1
    finally:
        assert release() == 0
    status, err = finish(collector)
    assert status == 0, err
    assert [r.value for r in get_observation_log(db.address, "trial-early")] == [str(i) for i in range(5200)]
    assert "Metrics reported: 5200 rows" in err
