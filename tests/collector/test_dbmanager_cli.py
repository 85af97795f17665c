"""`katib-metrics db-manager`: a real process that answers gRPC, stops on SIGTERM, and fails clearly."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from katib_metrics.collector.dbmanager.cli import main
from katib_metrics.collector.dbmanager.server import serve
from katib_metrics.collector.report import DBManagerReporter, get_observation_log
from katib_metrics.collector.report._generated import health_pb2, health_pb2_grpc
from katib_metrics.parsers.model import MetricLog

pytestmark = pytest.mark.timeout(60)
PROG = "katib-metrics db-manager"
ROOT = Path(__file__).resolve().parents[2]


def _stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str], pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; stderr so far: {''.join(seen)}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_a_stop_signal_and_keeps_the_rows(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    db = tmp_path / "obs.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "katib_metrics", "db-manager", "--listen", "127.0.0.1:0", "--db", str(db)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = _stderr_lines(proc)
        address = _wait_for_line(lines, r"listening on (127\.0\.0\.1:\d+)", timeout=30).group(1)
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[no-untyped-call]
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with DBManagerReporter(address) as reporter:
            reporter.report("cli-trial", [MetricLog("2024-01-01T00:00:00Z", "loss", "0.1")])
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=20) == 0
        _wait_for_line(lines, rf"received {stop_signal.name}, stopping", timeout=5)
        _wait_for_line(lines, r"db-manager stopped", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert db.exists()
    again = serve("127.0.0.1:0", db)
    try:
        assert get_observation_log(again.address, "cli-trial") == [
            MetricLog("2024-01-01T00:00:00Z", "loss", "0.1")
        ]
    finally:
        again.stop(None)


def test_help_explains_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], PROG) == 0
    out = capsys.readouterr().out
    assert "usage: katib-metrics db-manager" in out and "127.0.0.1:6789" in out
    assert "observations.db" in out and "0.0.0.0:6789" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "6789"], "invalid listen address '6789': expected HOST:PORT"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--listen"], "expected one argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, PROG) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_port_in_use_exits_1_naming_the_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = serve("127.0.0.1:0", tmp_path / "a.db")
    try:
        assert main(["--listen", busy.address, "--db", str(tmp_path / "b.db")], PROG) == 1
    finally:
        busy.stop(None)
    err = capsys.readouterr().err.strip()
    assert err == (
        f"{PROG}: error: cannot listen on {busy.address}: the port is in use or the address is not "
        "local; stop the other process or choose another --listen"
    )


def test_unusable_db_path_exits_1_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "127.0.0.1:0", "--db", str(tmp_path)], PROG) == 1  # a directory
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "--db" in err and len(err.strip().splitlines()) == 1


def test_db_in_a_missing_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "127.0.0.1:0", "--db", str(tmp_path / "typo" / "obs.db")], PROG) == 2
    err = capsys.readouterr().err
    assert f"directory {tmp_path / 'typo'} does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "typo").exists()


def test_port_in_use_is_one_line_without_grpcs_own_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run([sys.executable, "-m", "katib_metrics", "db-manager", "--listen", address,
                               "--db", str(tmp_path / "obs.db")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"{PROG}: error: cannot listen on {address}: the port is in use or the "
                                        "address is not local; stop the other process or choose another --listen"]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_right_at_the_announcement_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_signal: signal.Signals
) -> None:
    """The worst moment: the signal arrives as "listening on" is logged. Handlers must already be ours."""
    seen: list[object] = []

    class AtAnnouncement(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "listening on" in record.getMessage():
                seen.append(signal.getsignal(stop_signal))
                if signal.getsignal(stop_signal) not in (signal.SIG_DFL, signal.default_int_handler):
                    os.kill(os.getpid(), stop_signal)  # only when it cannot kill the test run itself

    logger = logging.getLogger("katib_metrics.collector.dbmanager.cli")
    handler = AtAnnouncement()
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        code = main(["--listen", "127.0.0.1:0", "--db", str(tmp_path / "obs.db")], PROG)
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 1 and seen[0] not in (signal.SIG_DFL, signal.default_int_handler)
    assert code == 0
