"""The retry loop and the chunking, as pure functions: backoff curve, budget, chunk bounds."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from katib_metrics.collector.report._generated import api_pb2
from katib_metrics.collector.report.retry import CallFailed, RetryPolicy, call_with_retry
from katib_metrics.collector.report.wire import encode_requests
from katib_metrics.parsers.model import MetricLog
from tests.collector.grpc_doubles import FakeClock


class Failure(grpc.RpcError):  # type: ignore[misc]
    """What a failed unary call raises: an RpcError that is also a Call with a code."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"test {self._code.name}"


def failing(codes: list[grpc.StatusCode], timeouts: list[float]) -> Callable[[float], str]:
    def call(timeout: float) -> str:
        timeouts.append(timeout)
        if codes:
            raise Failure(codes.pop(0))
        return "ok"

    return call


@pytest.mark.parametrize(
    ("failures", "rand", "expected"),
    [
        (1, 0.5, 0.2),
        (2, 0.5, 0.4),
        (3, 0.5, 0.8),
        (7, 0.5, 10.0),
        (10_000, 0.5, 10.0),
        (1, 0.0, 0.16),
        (1, 1.0, 0.24),
    ],
)
def test_backoff_doubles_is_capped_and_jittered(failures: int, rand: float, expected: float) -> None:
    assert RetryPolicy().backoff(failures, rand) == pytest.approx(expected)


def test_each_attempt_gets_the_call_timeout_but_never_more_than_the_budget_left() -> None:
    clock, timeouts = FakeClock(), list[float]()
    codes = [grpc.StatusCode.UNAVAILABLE] * 3
    policy = RetryPolicy(budget=1.0, call_timeout=0.5)
    result = call_with_retry(failing(codes, timeouts), policy=policy, deadline=1.0, clock=clock)
    assert result == ("ok", 4)
    assert timeouts == pytest.approx([0.5, 0.5, 0.4, 0.05])  # the last pause was cut to fit one attempt


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.PERMISSION_DENIED,
    ],
)
def test_other_codes_fail_at_once(code: grpc.StatusCode) -> None:
    clock = FakeClock()
    with pytest.raises(CallFailed) as info:
        call_with_retry(failing([code], []), policy=RetryPolicy(), deadline=300, clock=clock)
    assert (info.value.code, info.value.attempts, info.value.gave_up) == (code.name, 1, False)
    assert clock.sleeps == []


def test_budget_runs_out_on_endless_retryable_errors() -> None:
    clock = FakeClock()
    codes = [grpc.StatusCode.DEADLINE_EXCEEDED] * 1000
    with pytest.raises(CallFailed) as info:
        call_with_retry(failing(codes, []), policy=RetryPolicy(budget=60), deadline=60, clock=clock)
    assert info.value.gave_up and info.value.code == "DEADLINE_EXCEEDED"
    assert 59.9 <= clock.now() <= 60 and info.value.attempts < 20


def log(value_size: int) -> MetricLog:
    return MetricLog("2024-01-01T00:00:00Z", "m", "x" * value_size)


def chunked(logs: list[MetricLog], max_rows: int, max_bytes: int) -> list[list[MetricLog]]:
    """The rows of each encoded request, decoded by the generated classes."""
    chunks = []
    for request in encode_requests("trial", logs, max_rows, max_bytes):
        decoded = api_pb2.ReportObservationLogRequest.FromString(request.data)
        assert decoded.trial_name == "trial" and len(decoded.observation_log.metric_logs) == request.rows
        chunks.append([MetricLog(m.time_stamp, m.metric.name, m.metric.value)
                       for m in decoded.observation_log.metric_logs])
    return chunks


@pytest.mark.parametrize(
    ("rows", "sizes"), [(0, []), (1, [1]), (5000, [5000]), (5001, [5000, 1]), (12000, [5000, 5000, 2000])]
)
def test_chunks_hold_at_most_5000_rows(rows: int, sizes: list[int]) -> None:
    assert [len(c) for c in chunked([log(1)] * rows, 5000, 3 << 20)] == sizes


def test_a_row_larger_than_the_byte_limit_travels_alone() -> None:
    logs = [log(10), log(1000), log(10)]
    assert [len(c) for c in chunked(logs, 5000, 500)] == [1, 1, 1]


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 7), st.integers(1, 1000))
def test_chunking_keeps_every_row_once_in_order_within_bounds(
    sizes: list[int], max_rows: int, max_bytes: int
) -> None:
    logs = [MetricLog("t", "m", "v" * size + str(i)) for i, size in enumerate(sizes)]
    chunks = chunked(logs, max_rows, max_bytes)
    assert [row for chunk in chunks for row in chunk] == logs
    at = 0
    for chunk in chunks:
        at += len(chunk)
        assert 1 <= len(chunk) <= max_rows
        log_bytes = sum(map(element_size, chunk))
        assert len(chunk) == 1 or log_bytes <= max_bytes
        if len(chunk) < max_rows and at < len(logs):  # cut by size: the next row would not have fitted
            assert log_bytes + element_size(logs[at]) > max_bytes


def element_size(row: MetricLog) -> int:
    """Bytes one row adds to an ObservationLog, as protobuf itself encodes it."""
    olog = api_pb2.ObservationLog()
    added = olog.metric_logs.add(time_stamp=row.time_stamp)
    added.metric.name, added.metric.value = row.name, row.value
    return len(olog.SerializeToString())
