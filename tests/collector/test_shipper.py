"""Incremental reporting: rows reach a real gRPC db-manager during the run, once each, the tail at finish."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from katib_metrics.collector.report import ReportCounters, ReportError
from katib_metrics.collector.report.observer import ReportOutcome
from katib_metrics.collector.shipper import Shipper
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from tests.collector.grpc_doubles import RecordingDBManager, start_server

SPEC = CollectorSpec(("accuracy", "loss"))


def rows(start: int, stop: int) -> list[MetricLog]:
    return [MetricLog(f"2024-01-01T00:00:{i % 60:02d}Z", "loss", str(i)) for i in range(start, stop)]


def values(servicer: RecordingDBManager) -> list[str]:
    return [value for _, _, value in servicer.all_rows()]


def received_at_least(servicer: RecordingDBManager, count: int, timeout: float = 20) -> bool:
    with servicer._cond:
        return servicer._cond.wait_for(
            lambda: sum(len(r.rows) for r in servicer.received) >= count, timeout)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricStore]:
    store = MetricStore(SPEC, memory_rows=700, spill_dir=tmp_path)
    yield store
    store.close()


def test_full_batches_go_during_the_run_and_the_rest_with_the_unavailable_row_at_finish(
        store: MetricStore) -> None:
    servicer = RecordingDBManager()
    server, address = start_server(servicer)
    counters = ReportCounters()
    shipper = Shipper(store, "trial-inc", address, observer=counters, threshold=1000, interval=60).start()
    try:
        for start in range(0, 2500, 250):
            store.add(rows(start, start + 250))
        assert received_at_least(servicer, 1501)  # sent while 1,000 or more wait: fewer than 1,000 are left
        so_far = values(servicer)
        assert so_far == [str(i) for i in range(len(so_far))]  # in order, and no unavailable row yet
        store.add(rows(2500, 2800))
        done = shipper.finish(budget=30)
    finally:
        server.stop(None)
    assert values(servicer) == [str(i) for i in range(2800)] + ["unavailable"]
    assert servicer.received[-1].rows[-1] == ("0001-01-01T00:00:00Z", "accuracy", "unavailable")
    assert done.rows == 2801
    assert done.requests == len(servicer.received)
    assert counters.outcomes[ReportOutcome.FAILED] == 0


def test_a_small_remainder_goes_after_the_interval(store: MetricStore) -> None:
    servicer = RecordingDBManager()
    server, address = start_server(servicer)
    shipper = Shipper(store, "trial-few", address, threshold=5000, interval=0.1).start()
    try:
        store.add(rows(0, 3))
        assert received_at_least(servicer, 3)
        done = shipper.finish(budget=30)
    finally:
        server.stop(None)
    assert values(servicer) == ["0", "1", "2", "unavailable"]
    assert done.rows == 4


def test_failures_during_the_run_lose_and_duplicate_nothing(store: MetricStore) -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE if n <= 4 else None)
    server, address = start_server(servicer)
    counters = ReportCounters()
    shipper = Shipper(store, "trial-flaky", address, observer=counters, threshold=500, interval=0.05,
                      attempt_budget=0.2).start()
    try:
        for start in range(0, 3000, 300):
            store.add(rows(start, start + 300))
        assert received_at_least(servicer, 3000)
        done = shipper.finish(budget=30)
    finally:
        server.stop(None)
    assert values(servicer) == [str(i) for i in range(3000)] + ["unavailable"]
    assert done.rows == 3001
    assert counters.outcomes[ReportOutcome.FAILED] == 0  # a run-time failure is a retry, not a failed report
    assert counters.outcomes[ReportOutcome.RETRIED] >= 1
    assert counters.total_retries() >= 4


def test_a_permanent_error_fails_the_final_delivery_with_the_rows_stored(store: MetricStore) -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.INVALID_ARGUMENT if n >= 2 else None)
    server, address = start_server(servicer)
    shipper = Shipper(store, "trial-bad", address, threshold=100, interval=60, attempt_budget=0.2).start()
    try:
        store.add(rows(0, 100))
        assert received_at_least(servicer, 100)
        store.add(rows(100, 250))
        with pytest.raises(ReportError) as failed:
            shipper.finish(budget=2)
    finally:
        server.stop(None)
    assert failed.value.code == "INVALID_ARGUMENT"
    assert (failed.value.rows_acknowledged, failed.value.rows_total) == (100, 251)
    assert values(servicer) == [str(i) for i in range(100)]


def test_take_reads_spilled_rows_back_in_order_while_rows_keep_coming(store: MetricStore) -> None:
    taken: list[MetricLog] = []
    for start in range(0, 5000, 900):
        store.add(rows(start, min(start + 900, 5000)))
        taken += store.take(600)
    assert store.unreported == 5000 - len(taken)
    rest = list(store.all_rows())
    assert [row.value for row in taken + rest[:-1]] == [str(i) for i in range(5000)]
    assert rest[-1] == MetricLog.unavailable("accuracy")
    while batch := store.take(1234):
        taken += batch
    assert [row.value for row in taken] == [str(i) for i in range(5000)]
    assert store.unreported == 0 and store.row_count == 5000
    assert list(store.all_rows()) == [MetricLog.unavailable("accuracy")]


def test_spilled_rows_longer_than_one_read_come_back(tmp_path: Path) -> None:
    store = MetricStore(CollectorSpec(), memory_rows=1, spill_dir=tmp_path)
    long = [MetricLog("2024-01-01T00:00:00Z", "x" * 300_000, str(i)) for i in range(3)]
    for row in long:
        store.add([row])
    assert store.take(2) == long[:2]
    assert list(store.all_rows()) == long[2:]
    store.close()


class _HookedLock:
    """The store's lock, running `hook` before each acquisition from the walk (to force an interleaving)."""

    def __init__(self, lock: threading.Lock, hook: Callable[[], None]) -> None:
        self.lock, self.hook, self.count = lock, hook, 0

    def __enter__(self) -> None:
        self.count += 1
        if self.count == 2:  # the walk's second look at the store: the pipeline adds (and spills) first
            self.hook()
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_rows_added_while_the_final_walk_runs_do_not_hide_rows_of_the_cut(tmp_path: Path) -> None:
    spec = CollectorSpec(("loss",))
    store = MetricStore(spec, memory_rows=3, spill_dir=tmp_path)
    store.add([MetricLog("t", "loss", "0"), MetricLog("t", "loss", "1")])
    hooked = _HookedLock(store._lock, lambda: store.add([MetricLog("t", "loss", "2")]))  # spills all three
    store._lock = hooked  # type: ignore[assignment]
    assert list(store.all_rows()) == [MetricLog("t", "loss", "0"), MetricLog("t", "loss", "1")]
    assert store.cut == 2
