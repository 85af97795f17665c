"""A SIGTERM while the final report retries: said at once, and the sidecar ends within its grace period."""

from __future__ import annotations

import signal
import threading
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



class EndlessDrain:
    """A final read that never ends (a file that keeps growing), until the time given runs out."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def stop(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return False


def test_a_final_read_is_unbounded_until_sigterm_then_bounded_by_the_grace_period() -> None:
    from katib_metrics.collector.sidecar import final_read

    terminated, drain, now = threading.Event(), EndlessDrain(), [100.0]

    def stop(timeout: float | None = None) -> bool:
        drain.timeouts.append(timeout)
        if len(drain.timeouts) == 3:
            terminated.set()  # the kubelet's SIGTERM arrives during the third slice
        now[0] += 0.5
        return False

    drain.stop = stop  # type: ignore[method-assign]
    finished, grace_ends = final_read(drain, None, terminated, 20.0, lambda: now[0])
    assert not finished and grace_ends == 101.5 + 20.0
    assert drain.timeouts[:3] == [0.5, 0.5, 0.5] and drain.timeouts[3] == 20.0  # never None: never unbounded
    assert len(drain.timeouts) == 4


def test_a_final_read_after_sigterm_is_bounded_at_once() -> None:
    from katib_metrics.collector.sidecar import final_read

    drain = EndlessDrain()
    assert final_read(drain, 105.0, threading.Event(), 20.0, lambda: 100.0) == (False, 105.0)
    assert drain.timeouts == [5.0]
