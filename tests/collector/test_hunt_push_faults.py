"""Push mode against faults the other push tests lack: calls cut by a stopping db-manager, names gRPC cannot carry."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

import katib_metrics
from katib_metrics import MetricsReporter
from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.push_values import PushError
from katib_metrics.collector.report import get_observation_log
from tests.collector.grpc_doubles import free_port
from tests.collector.push_doubles import QueryableRecorder, serving, trial_env

pytestmark = pytest.mark.timeout(60)
__all__ = ["trial_env"]  # a fixture, used by name


@dataclass
class CancelsAfterStoring(QueryableRecorder):
    """Stores the calls in `cancel_calls`, then answers CANCELLED, as a db-manager stopping mid-call may."""

    cancel_calls: set[int] = field(default_factory=set)

    def ReportObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        reply = super().ReportObservationLog(request, context)
        if self.calls in self.cancel_calls:
            context.abort(grpc.StatusCode.CANCELLED, "the server is shutting down")
        return reply


@pytest.mark.parametrize("stored_first", [True, False], ids=["stored", "not-stored"])
def test_a_call_the_server_cancels_is_looked_up_and_stored_once(trial_env: str, stored_first: bool) -> None:
    recorder = (CancelsAfterStoring(cancel_calls={1}) if stored_first
                else QueryableRecorder(script=lambda n: grpc.StatusCode.CANCELLED if n == 1 else None))
    for servicer, address in serving(recorder):
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=address, timeout=30)
        assert isinstance(servicer, QueryableRecorder) and servicer.lookups == 1
        assert [row[1:] for row in servicer.all_rows()] == [("loss", "0.5")]


def test_a_db_manager_stopped_mid_call_and_restarted_again_and_again_loses_and_repeats_nothing(
        trial_env: str, tmp_path: Path) -> None:
    # Stopped with no grace while requests are in flight, a db-manager's calls end UNAVAILABLE or CANCELLED.
    port, db = free_port(), tmp_path / "observations.db"
    server = serve(f"127.0.0.1:{port}", db)
    reporter = MetricsReporter(server.address, batch_rows=200)
    step = 0
    try:
        for _ in range(15):
            until = time.monotonic() + 0.1
            while time.monotonic() < until:
                reporter.report({"loss": step})
                step += 1
            server.stop(grace=None)
            server = serve(f"127.0.0.1:{port}", db)
        assert reporter.flush(60), "values were refused or not stored in time"
        assert reporter.close() == 0
        values = [int(row.value) for row in get_observation_log(server.address, trial_env, "loss")]
    finally:
        reporter.close(0)
        server.stop(grace=None)
    assert Counter(values) == Counter(range(step))  # every value, once
    assert values == sorted(values)  # stamps keep report order across the restarts


SURROGATE = b"acc\xff".decode("utf-8", "surrogateescape")  # what os.fsdecode makes of non-UTF-8 bytes


def test_a_metric_name_grpc_cannot_carry_raises_at_the_call_and_sends_nothing(trial_env: str) -> None:
    for servicer, address in serving(QueryableRecorder()):
        with pytest.raises(PushError, match=r"metric name 'acc\\udcff' cannot be sent: gRPC strings are UTF-8"):
            katib_metrics.report_metrics({"loss": 0.5, SURROGATE: 1.0}, db_manager_address=address, timeout=5)
        with MetricsReporter(address) as reporter, pytest.raises(PushError, match="cannot be sent"):
            reporter.report({SURROGATE: 1.0})
        assert servicer.calls == 0


def test_a_trial_name_that_is_not_utf8_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATIB_TRIAL_NAME", SURROGATE)
    with pytest.raises(ValueError, match=r"KATIB_TRIAL_NAME='acc\\udcff' is not UTF-8 text"):
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address="127.0.0.1:1", timeout=1)
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        MetricsReporter("127.0.0.1:1")


def test_close_cuts_a_hanging_call_at_its_timeout_and_says_the_values_may_be_stored(
        trial_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The db-manager stores the request, then does not answer for 20 s (a hung server, a lost reply).
    recorder = QueryableRecorder(delay_calls={1}, store_before_delay=True, delay=20.0)
    for servicer, address in serving(recorder):
        reporter = MetricsReporter(address)
        reporter.report({"loss": 0.5})
        deadline = time.monotonic() + 30
        while not servicer.calls:
            assert time.monotonic() < deadline, "the request never arrived"
            time.sleep(0.005)
        started = time.monotonic()
        assert reporter.close(timeout=0.5) == 1
        took = time.monotonic() - started
        assert took < 3, f"close(timeout=0.5) took {took:.1f} s"
        err = capsys.readouterr().err
        assert "1 metric values of trial push-trial (loss) were NOT reported" in err
        assert "the last request may have been stored" in err, err


def _report_in_child(reporter: MetricsReporter) -> None:
    reporter.report({"child": 2})
    assert reporter.flush(5) and reporter.close() == 0


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python 3.12+
def test_a_reporter_used_in_a_forked_child_stores_what_the_child_reports(trial_env: str, tmp_path: Path) -> None:
    # The child has no background thread: its values used to sit in its copy of the queue and die with it.
    server = serve("127.0.0.1:0", tmp_path / "obs.db")
    try:
        reporter = MetricsReporter(server.address)
        reporter.report({"parent": 1})
        assert reporter.flush(30)
        child = multiprocessing.get_context("fork").Process(target=_report_in_child, args=(reporter,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        reporter.report({"parent": 3})
        assert reporter.close() == 0
        rows = get_observation_log(server.address, trial_env)
    finally:
        server.stop(None)
    assert [(row.name, row.value) for row in rows] == [("parent", "1"), ("child", "2"), ("parent", "3")]


def test_a_report_of_more_values_than_the_queue_holds_is_taken_when_the_queue_is_empty(trial_env: str) -> None:
    for servicer, address in serving(QueryableRecorder()):
        with MetricsReporter(address, max_queued_rows=1, batch_rows=2, timeout=5) as reporter:
            started = time.monotonic()
            reporter.report({f"m{n}": n for n in range(3)})  # used to wait `timeout`, then raise, queue empty
            assert time.monotonic() - started < 2
            assert reporter.flush(30)
        assert sorted(name for _, name, _ in servicer.all_rows()) == ["m0", "m1", "m2"]


@pytest.mark.parametrize(("address", "why"), [
    ("http://127.0.0.1:6789", r"gRPC takes HOST:PORT, not a URL; use '127.0.0.1:6789'"),
    ("127.0.0.1:99999", "port 99999 is beyond 65535"),  # gRPC would dial port 34463 instead
])
def test_an_address_grpc_can_never_reach_is_refused_at_once(trial_env: str, address: str, why: str) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=why):  # it used to be retried for the whole timeout
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=address, timeout=30)
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match=why):
        MetricsReporter(address)
