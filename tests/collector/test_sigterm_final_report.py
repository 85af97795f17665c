"""A SIGTERM while the final report retries: said at once, and the sidecar ends within its grace period."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc

from tests.collector.grpc_doubles import RecordingDBManager, start_server
from tests.collector.test_collect_integration import finish, sidecar


def wait_until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_during_the_final_report_ends_it_within_the_grace_period_with_the_reason(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.log").write_text("loss=0.5\nloss=0.25\n")
    (logs / "7.pid").write_text("completed\n")  # the training is done: the final report starts at once
    dbm = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE)  # a db-manager that never stores
    server, address = start_server(dbm)
    try:
        collector = sidecar("-t", "late", "-m", "loss", "-s-db", address, "-path", str(logs / "metrics.log"),
                            "--grace-period", "2s", "--report-timeout", "300s")
        wait_until(lambda: dbm.calls >= 2, timeout=60)  # retrying the final report
        sent = time.monotonic()
        collector.send_signal(signal.SIGTERM)
        status, err = finish(collector, timeout=60)
        took = time.monotonic() - sent
    finally:
        server.stop(grace=None)
    assert status == 1, err
    assert took < 20, f"{took:.1f}s after SIGTERM (grace period 2 s)"
    assert "terminated during the final report: 2s (--grace-period) left" in err
    assert "did not finish within the grace period after SIGTERM" in err
    assert "2 rows of trial late (loss) not acknowledged by the db-manager at 127.0.0.1:" in err


def test_a_report_that_ends_before_any_signal_is_unaffected(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.log").write_text("loss=0.5\n")
    (logs / "7.pid").write_text("completed\n")
    dbm = RecordingDBManager()
    server, address = start_server(dbm)
    try:
        status, err = finish(sidecar("-t", "ok", "-m", "loss", "-s-db", address, "-path",
                                     str(logs / "metrics.log"), "--grace-period", "1s"), timeout=60)
    finally:
        server.stop(grace=None)
    assert status == 0, err
    assert dbm.all_rows()[0][1:] == ("loss", "0.5")
    assert "terminated" not in err
