"""`katib_metrics.MetricsReporter`: queues, stores in the background, survives outages, names what it lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from katib_metrics import MetricsReporter
from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.push_values import PushError
from katib_metrics.collector.report import get_observation_log
from tests.collector.grpc_doubles import RecordingDBManager, free_port
from tests.collector.push_doubles import QueryableRecorder, serving, trial_env

pytestmark = pytest.mark.timeout(90)
__all__ = ["trial_env"]  # a fixture, used by name


def wait_until(reporter: MetricsReporter, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    with reporter.changed:
        assert reporter.changed.wait_for(condition, timeout), "condition not met in time"


def wait_for_calls(servicer: RecordingDBManager, calls: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while servicer.calls < calls:
        assert time.monotonic() < deadline, f"the server saw {servicer.calls} calls, not {calls}"
        time.sleep(0.005)


def test_a_backlog_goes_in_requests_of_at_most_5000_rows(trial_env: str) -> None:
    # The first request is held for a second (then stored): meanwhile 12,000 values queue up behind it.
    for servicer, address in serving(QueryableRecorder(delay_calls={1}, delay=1.0, store_before_delay=True)):
        with MetricsReporter(address) as reporter:
            reporter.report({"loss": 0})
            wait_for_calls(servicer, 1)
            for step in range(1, 12_001):
                reporter.report({"loss": step})
            assert reporter.flush(60)
        assert [len(request.rows) for request in servicer.received] == [1, 5000, 5000, 2000]
        assert [int(value) for _, _, value in servicer.all_rows()] == list(range(12_001))


def test_report_returns_at_once_and_the_values_are_stored_in_order(trial_env: str, tmp_path: Path) -> None:
    server = serve("127.0.0.1:0", tmp_path / "db")
    try:
        reporter = MetricsReporter(server.address)
        started = time.monotonic()
        for step in range(20_000):
            reporter.report({"loss": 1 / (step + 1), "step": step})
        queued = time.monotonic() - started
        assert reporter.flush(60) and reporter.close() == 0
        rows = get_observation_log(server.address, trial_env, "step")
        assert [int(row.value) for row in rows] == list(range(20_000))
        assert queued < 10.0, f"queueing 20,000 reports took {queued:.1f} s"
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize("outage", [pytest.param(3.0, id="3s"), pytest.param(10.0, id="10s", marks=pytest.mark.slow)])
def test_a_db_manager_down_while_a_loop_reports_loses_and_repeats_nothing(
        trial_env: str, tmp_path: Path, outage: float, caplog: pytest.LogCaptureFixture) -> None:
    port, db = free_port(), tmp_path / "observations.db"
    server = serve(f"127.0.0.1:{port}", db)
    reporter = MetricsReporter(server.address)
    slowest, step = 0.0, 0

    def train_step() -> None:
        nonlocal slowest, step
        started = time.monotonic()
        reporter.report({"loss": step, "accuracy": step / 1000})
        slowest, step = max(slowest, time.monotonic() - started), step + 1
        time.sleep(0.002)  # the training's own work between two reports

    for _ in range(50):
        train_step()
    assert reporter.flush(30)
    server.stop(grace=None)
    down_since = time.monotonic()
    while time.monotonic() - down_since < outage or reporter.retries < 3:
        train_step()
    server = serve(f"127.0.0.1:{port}", db)  # the db-manager restarts, same database
    try:
        for _ in range(50):
            train_step()
        assert reporter.flush(60)
        assert reporter.close() == 0
        rows = get_observation_log(server.address, trial_env, "loss")
    finally:
        server.stop(grace=None)
    assert sorted(int(row.value) for row in rows) == list(range(step))  # every value, once
    assert slowest < 0.5, f"report() blocked for {slowest:.2f} s during the outage"
    assert any("retrying in the background" in message for message in caplog.messages)
    assert any("stores values again" in message for message in caplog.messages)


EXIT_SCRIPT = textwrap.dedent("""
    import sys
    from katib_metrics import MetricsReporter
    reporter = MetricsReporter(sys.argv[1], exit_timeout=float(sys.argv[2]))
    for step in range(5):
        reporter.report({"accuracy": step / 10, "loss": 1 / (step + 1), "lr": 0.1})
    print("training done", flush=True)
""")


def run_script(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    script = tmp_path / "train.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "KATIB_TRIAL_NAME": "exit-trial"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                            timeout=60)
    return result, time.monotonic() - started


def test_exit_with_a_queue_it_cannot_deliver_says_what_was_lost_and_why(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result, took = run_script(tmp_path, address, "1.5")
    assert result.returncode == 0 and result.stdout == "training done\n"
    assert (f"katib_metrics: 15 metric values of trial exit-trial (accuracy, loss, lr) were NOT reported to the "
            f"db-manager at {address}: not stored within 1.5 s of closing (last answer UNAVAILABLE") in result.stderr
    assert took < 30, f"exit took {took:.1f} s with a 1.5 s exit timeout"


def test_exit_stores_the_queue_without_an_explicit_close(tmp_path: Path) -> None:
    server = serve("127.0.0.1:0", tmp_path / "db")
    try:
        result, _ = run_script(tmp_path, server.address, "30")
        assert result.returncode == 0 and "NOT reported" not in result.stderr, result.stderr
        rows = get_observation_log(server.address, "exit-trial")
    finally:
        server.stop(grace=None)
    assert len(rows) == 15 and {row.name for row in rows} == {"accuracy", "loss", "lr"}


def test_values_the_db_manager_refuses_are_named_on_close(trial_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    for servicer, address in serving(RecordingDBManager(script=lambda n: grpc.StatusCode.INVALID_ARGUMENT)):
        reporter = MetricsReporter(address)
        reporter.report({"loss": 0.5, "accuracy": 0.1})
        assert not reporter.flush(30)
        assert reporter.close(timeout=5) == 2
        assert servicer.calls == 1
    err = capsys.readouterr().err
    assert "2 metric values of trial push-trial (accuracy, loss) were NOT reported" in err
    assert "refused with INVALID_ARGUMENT: scripted" in err


def test_a_full_queue_makes_report_wait_then_raise(trial_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    reporter = MetricsReporter(f"127.0.0.1:{free_port()}", timeout=0.3, max_queued_rows=10, batch_rows=5)
    with pytest.raises(RuntimeError, match=r"values are still waiting for the db-manager .* after 0\.3 s"):
        for step in range(100):
            reporter.report({"loss": step})
    assert reporter.close(timeout=0.2) == 15  # 10 queued and 5 in flight: none was dropped
    assert "15 metric values" in capsys.readouterr().err


def test_a_bad_value_raises_at_the_call_and_queues_nothing(trial_env: str) -> None:
    for servicer, address in serving(RecordingDBManager()):
        with MetricsReporter(address) as reporter:
            with pytest.raises(RuntimeError, match="'x' is not a number"):
                reporter.report({"loss": "x"})
            reporter.report({"loss": 1})
        assert [row[1:] for row in servicer.all_rows()] == [("loss", "1")]
        with pytest.raises(PushError, match="closed"):
            reporter.report({"loss": 2})


def test_without_trial_name_the_reporter_is_not_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KATIB_TRIAL_NAME", raising=False)
    with pytest.raises(ValueError, match="The Trial name is not passed"):
        MetricsReporter("127.0.0.1:1")


def test_waiting_on_the_reporter_works(trial_env: str) -> None:
    for _, address in serving(RecordingDBManager()):
        with MetricsReporter(address) as reporter:
            reporter.report({"loss": 1})
            wait_until(reporter, lambda: reporter.stored == 1)


MEMORY_SCRIPT = textwrap.dedent("""
    import sys
    def rss_mib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) // 1024
    from katib_metrics import MetricsReporter
    reporter = MetricsReporter(sys.argv[1], timeout=0.5, exit_timeout=0.5)
    reporter.report({"loss": 0})  # gRPC, its channel and the reporting thread exist: the baseline
    base = rss_mib()
    try:
        for step in range(1_000_000):
            reporter.report({"loss": step / 1e6})
    except RuntimeError as err:
        print(step, rss_mib() - base, "values queued before:", err)
""")


def test_an_unreachable_db_manager_bounds_the_queue_and_its_memory(tmp_path: Path) -> None:
    script = tmp_path / "flood.py"
    script.write_text(MEMORY_SCRIPT)
    result = subprocess.run([sys.executable, str(script), f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "KATIB_TRIAL_NAME": "flood"})
    assert result.returncode == 0, result.stderr
    queued, grown_mib = map(int, result.stdout.split()[:2])
    assert 100_000 <= queued <= 105_000 and "still waiting for the db-manager" in result.stdout
    assert f"{queued + 1} metric values of trial flood (loss) were NOT reported" in result.stderr  # + the baseline one
    # What the queue itself adds (a total peak varied 60-186 MiB with the machine's load: gRPC's import and its
    # threads' malloc arenas); 100,000 queued values measured ~25 MiB, a million unbounded over 200 MiB.
    assert grown_mib < 60, f"RSS grew {grown_mib} MiB with 100,000 values queued"
