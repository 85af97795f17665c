"""The reporting client against real gRPC servers that record what arrives and fail on purpose."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from katib_metrics.collector.report import (
    DBManagerReporter,
    EarlyStoppingClient,
    ReportCounters,
    ReportError,
    ReportOutcome,
    ReportResult,
    RetryPolicy,
    TrialStatusError,
)
from katib_metrics.parsers.model import MetricLog
from tests.collector.grpc_doubles import (
    FakeClock,
    RecordingDBManager,
    RecordingEarlyStopping,
    free_port,
    start_server,
)

pytestmark = pytest.mark.timeout(30)


def rows(n: int, name: str = "loss") -> list[MetricLog]:
    return [MetricLog(f"2024-03-04T01:55:{i % 60:02d}.{i:06d}Z", name, str(i)) for i in range(n)]


def as_tuples(logs: list[MetricLog]) -> list[tuple[str, str, str]]:
    return [(log.time_stamp, log.name, log.value) for log in logs]


@pytest.fixture
def recording() -> Iterator[tuple[RecordingDBManager, str]]:
    servicer = RecordingDBManager()
    server, address = start_server(servicer)
    yield servicer, address
    server.stop(None)


def test_small_log_arrives_in_one_request(recording: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recording
    logs = [
        MetricLog("2024-03-04T01:55:08Z", "accuracy", "0.9"),
        MetricLog("0001-01-01T00:00:00Z", "loss", "x"),
    ]
    with DBManagerReporter(address) as reporter:
        result = reporter.report("trial-1", logs)
    assert (result.rows, result.requests, result.attempts, result.outcome) == (2, 1, 1, ReportOutcome.SUCCESS)
    assert [r.trial for r in servicer.received] == ["trial-1"]
    assert servicer.all_rows() == as_tuples(logs)


def test_20000_rows_arrive_in_requests_of_at_most_5000_none_lost_none_duplicated(
    recording: tuple[RecordingDBManager, str],
) -> None:
    servicer, address = recording
    logs = rows(20_000)
    with DBManagerReporter(address) as reporter:
        result = reporter.report("big", logs)
    assert [len(r.rows) for r in servicer.received] == [5000, 5000, 5000, 5000]
    assert servicer.all_rows() == as_tuples(logs)
    assert (result.rows, result.requests) == (20_000, 4)


def test_large_values_split_requests_by_size_too(recording: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recording
    logs = [MetricLog("2024-03-04T01:55:08Z", "blob", str(i) * 100_000) for i in range(1, 10)]
    with DBManagerReporter(address, max_chunk_bytes=250_000) as reporter:
        result = reporter.report("sized", logs)
    assert result.requests == 5  # two ~100 kB rows per 250 kB request, the odd one alone
    assert servicer.all_rows() == as_tuples(logs)


def test_unavailable_for_the_first_10_seconds_then_up_loses_and_duplicates_nothing() -> None:
    clock = FakeClock()
    # The server is "down" while the client's (fake) clock is before 10 s: each attempt costs no real time.
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE if clock.now() < 10 else None)
    server, address = start_server(servicer)
    counters = ReportCounters()
    try:
        with DBManagerReporter(address, clock=clock, observer=counters) as reporter:
            result = reporter.report("late", rows(12_000))
    finally:
        server.stop(None)
    assert servicer.all_rows() == as_tuples(rows(12_000))
    assert [len(r.rows) for r in servicer.received] == [5000, 5000, 2000]
    assert result.outcome is ReportOutcome.RETRIED and result.retries == servicer.calls - 3
    assert 10 <= clock.now() < 10 + RetryPolicy().max_backoff * 1.2
    assert (
        counters.outcomes == {ReportOutcome.RETRIED: 1} and counters.retries["UNAVAILABLE"] == result.retries
    )
    # exponential, capped backoff: 0.2, 0.4, 0.8, ...
    assert clock.sleeps[:3] == pytest.approx([0.2, 0.4, 0.8])


def test_client_retries_until_a_server_starts_late_on_its_port() -> None:
    port = free_port()
    servicer = RecordingDBManager()
    started: list[grpc.Server] = []
    timer = threading.Timer(2.0, lambda: started.append(start_server(servicer, port=port)[0]))
    timer.start()
    counters = ReportCounters()
    begin = time.monotonic()
    try:
        with DBManagerReporter(f"127.0.0.1:{port}", report_timeout=20, observer=counters) as reporter:
            result = reporter.report("patient", rows(10))
    finally:
        timer.join()
        for server in started:
            server.stop(None)
    assert servicer.all_rows() == as_tuples(rows(10))
    assert result.outcome is ReportOutcome.RETRIED and counters.retries["UNAVAILABLE"] >= 1
    assert 1.9 < time.monotonic() - begin < 8  # reconnects promptly once the server is up


def scripted_report(code: grpc.StatusCode, calls: tuple[int, ...], trial: str, count: int) -> ReportResult:
    """`count` rows reported to a db-manager that answers `code` to the calls numbered in `calls`; all of them
    must land."""
    servicer = RecordingDBManager(script=lambda n: code if n in calls else None)
    server, address = start_server(servicer)
    try:
        with DBManagerReporter(address, clock=FakeClock()) as reporter:
            result = reporter.report(trial, rows(count))
    finally:
        server.stop(None)
    assert servicer.all_rows() == as_tuples(rows(count))
    return result


def test_acknowledged_chunks_are_not_resent_when_a_later_chunk_is_retried() -> None:
    result = scripted_report(grpc.StatusCode.RESOURCE_EXHAUSTED, (2, 3), "resume", 15_000)
    assert (result.requests, result.attempts) == (3, 5)


def test_a_call_cancelled_by_a_stopping_db_manager_is_sent_again() -> None:
    result = scripted_report(grpc.StatusCode.CANCELLED, (1,), "rolling-update", 10)
    assert result.outcome is ReportOutcome.RETRIED and (result.requests, result.attempts) == (1, 2)


def test_deadline_exceeded_is_retried_with_a_fresh_deadline() -> None:
    servicer = RecordingDBManager(delay_calls={1}, delay=2.0)
    server, address = start_server(servicer)
    try:
        with DBManagerReporter(address, call_timeout=0.3, report_timeout=10) as reporter:
            result = reporter.report("slow", rows(3))
    finally:
        server.stop(None)
    assert servicer.all_rows() == as_tuples(rows(3))
    assert result.attempts == 2


def test_deadline_exceeded_after_the_server_stored_the_chunk_resends_it_at_least_once() -> None:
    # The documented choice: a timed-out request may have been applied; it is sent again rather than lost.
    servicer = RecordingDBManager(delay_calls={1}, delay=2.0, store_before_delay=True)
    server, address = start_server(servicer)
    try:
        with DBManagerReporter(address, call_timeout=0.3, report_timeout=10) as reporter:
            reporter.report("twice", rows(2))
    finally:
        server.stop(None)
    assert servicer.all_rows() == as_tuples(rows(2)) * 2


def test_permanent_error_fails_at_once_with_a_clear_message() -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.INVALID_ARGUMENT)
    server, address = start_server(servicer)
    counters = ReportCounters()
    clock = FakeClock()
    try:
        with (
            DBManagerReporter(address, clock=clock, observer=counters) as reporter,
            pytest.raises(ReportError) as info,
        ):
            reporter.report("bad", rows(7))
    finally:
        server.stop(None)
    err = info.value
    assert (err.code, err.gave_up, err.attempts, err.rows_acknowledged, err.rows_total) == (
        "INVALID_ARGUMENT",
        False,
        1,
        0,
        7,
    )
    message = str(err)
    assert address in message and "INVALID_ARGUMENT" in message and "'bad'" in message
    assert "scripted INVALID_ARGUMENT" in message and "check the time stamps" in message
    assert clock.sleeps == [] and counters.outcomes == {ReportOutcome.FAILED: 1}


def test_retry_budget_exhausted_names_what_was_stored() -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE if n > 1 else None)
    server, address = start_server(servicer)
    clock = FakeClock()
    try:
        reporter = DBManagerReporter(address, report_timeout=30, chunk_size=2, clock=clock)
        with reporter, pytest.raises(ReportError) as info:
            reporter.report("doomed", rows(5))
    finally:
        server.stop(None)
    err = info.value
    assert err.gave_up and err.code == "UNAVAILABLE" and err.rows_acknowledged == 2
    assert "retry budget exhausted" in str(err) and "2 of 5 rows were stored" in str(err)
    assert 29.9 <= clock.now() <= 30
    assert servicer.all_rows() == as_tuples(rows(2))


def test_a_server_without_dbmanager_is_unimplemented_and_not_retried() -> None:
    server, address = start_server(RecordingEarlyStopping())
    try:
        with DBManagerReporter(address, clock=FakeClock()) as reporter, pytest.raises(ReportError) as info:
            reporter.report("t", rows(1))
    finally:
        server.stop(None)
    assert info.value.code == "UNIMPLEMENTED" and "not the right Katib service" in str(info.value)


def test_empty_log_sends_nothing(recording: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recording
    with DBManagerReporter(address) as reporter:
        result = reporter.report("empty", [])
    assert (result.rows, result.requests, servicer.calls) == (0, 0, 0)


@pytest.mark.parametrize("address", ["", " 127.0.0.1:1"])
def test_bad_address_is_a_value_error_naming_it(address: str) -> None:
    with pytest.raises(ValueError, match="invalid gRPC address"):
        DBManagerReporter(address)


def test_empty_trial_name_is_refused_before_any_call(recording: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recording
    with DBManagerReporter(address) as reporter, pytest.raises(ValueError, match="trial name is empty"):
        reporter.report("", rows(1))
    assert servicer.calls == 0


def test_set_trial_status_retries_unavailable() -> None:
    servicer = RecordingEarlyStopping(script=lambda n: grpc.StatusCode.UNAVAILABLE if n == 1 else None)
    server, address = start_server(servicer)
    try:
        with EarlyStoppingClient(address, clock=FakeClock()) as client:
            attempts = client.set_trial_status("stopped-trial")
    finally:
        server.stop(None)
    assert attempts == 2 and servicer.trials == ["stopped-trial"]


def test_set_trial_status_permanent_error_names_the_service() -> None:
    servicer = RecordingEarlyStopping(script=lambda n: grpc.StatusCode.NOT_FOUND)
    server, address = start_server(servicer)
    try:
        with (
            EarlyStoppingClient(address, clock=FakeClock()) as client,
            pytest.raises(TrialStatusError) as info,
        ):
            client.set_trial_status("gone")
    finally:
        server.stop(None)
    assert "early-stopping service" in str(info.value) and address in str(info.value)
    assert "NOT_FOUND" in str(info.value) and servicer.calls == 1


def test_a_per_call_budget_overrides_the_reporters() -> None:
    servicer = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE)
    server, address = start_server(servicer)
    clock = FakeClock()
    try:
        reporter = DBManagerReporter(address, report_timeout=300, clock=clock)
        with reporter, pytest.raises(ReportError) as info:
            reporter.report("short", rows(1), budget=5)
    finally:
        server.stop(None)
    assert info.value.gave_up and 4.9 <= clock.now() <= 5
