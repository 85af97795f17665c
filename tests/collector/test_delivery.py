"""Delivering a spilled store: every row once, in order, in ≤5,000-row requests, one outcome per report."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from katib_metrics.collector.delivery import deliver
from katib_metrics.collector.report import ReportCounters, ReportError
from katib_metrics.collector.report.observer import ReportOutcome
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from tests.collector.grpc_doubles import RecordingDBManager, start_server


def filled_store(tmp_path: Path, count: int) -> MetricStore:
    store = MetricStore(CollectorSpec(("loss",)), memory_rows=3000, spill_dir=tmp_path)
    for start in range(0, count, 1000):
        store.add([MetricLog(f"2024-01-01T00:00:{i % 60:02d}Z", "loss", str(i))
                   for i in range(start, min(start + 1000, count))])
    return store


def test_20000_rows_arrive_in_requests_of_at_most_5000(tmp_path: Path) -> None:
    servicer = RecordingDBManager()
    server, address = start_server(servicer)
    store = filled_store(tmp_path, 20_000)
    counters = ReportCounters()
    try:
        done = deliver(store, "trial-big", address, budget=30, observer=counters)
    finally:
        server.stop(None)
        store.close()
    assert [len(r.rows) for r in servicer.received] == [5000] * 4
    assert [row[2] for row in servicer.all_rows()] == [str(i) for i in range(20_000)]
    assert (done.rows, done.requests) == (20_000, 4)
    assert counters.outcomes == {ReportOutcome.SUCCESS: 1}  # one whole report, not one per chunk


def test_transient_unavailability_is_retried_without_loss_or_duplicates(tmp_path: Path) -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE if n in (2, 3) else None)
    server, address = start_server(servicer)
    store = filled_store(tmp_path, 12_000)
    counters = ReportCounters()
    try:
        done = deliver(store, "trial-retry", address, budget=30, observer=counters)
    finally:
        server.stop(None)
        store.close()
    assert [row[2] for row in servicer.all_rows()] == [str(i) for i in range(12_000)]
    assert done.retries == 2
    assert counters.outcomes == {ReportOutcome.RETRIED: 1}


def test_a_permanent_error_names_what_was_stored(tmp_path: Path) -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.INVALID_ARGUMENT if n == 2 else None)
    server, address = start_server(servicer)
    store = filled_store(tmp_path, 7_000)
    counters = ReportCounters()
    try:
        with pytest.raises(ReportError) as caught:
            deliver(store, "trial-bad", address, budget=30, observer=counters)
    finally:
        server.stop(None)
        store.close()
    assert "5000 of 7000 rows" in str(caught.value) and "INVALID_ARGUMENT" in str(caught.value)
    assert counters.outcomes == {ReportOutcome.FAILED: 1}
