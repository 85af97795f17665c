"""Model-based: whatever faults the transport scripts, `deliver` leaves every row stored exactly once.

The real `PushChannel` logic (encoding, splitting into requests, the look-up of a batch that may be stored)
runs over a scripted transport: each request may be stored or not, and answered with OK or a gRPC code.
The oracle is the multiset of rows the transport stored.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector.push_send import Batch, PushChannel, deliver
from katib_metrics.collector.push_values import Stamper
from katib_metrics.collector.report import RetryPolicy
from katib_metrics.collector.report._generated import api_pb2
from katib_metrics.collector.report.retry import CallFailed
from katib_metrics.parsers.model import MetricLog
from tests.collector.grpc_doubles import FakeClock

# What happens to one call: (stored?, answer). The answer None is OK.
Fate = tuple[bool, str | None]
SEND_FATES = st.sampled_from([(True, None), (False, "UNAVAILABLE"), (True, "UNAVAILABLE"), (False, "DEADLINE_EXCEEDED"),
                              (True, "DEADLINE_EXCEEDED"), (False, "RESOURCE_EXHAUSTED")])
LOOKUP_FATES = st.sampled_from([(False, None), (False, "UNAVAILABLE"), (False, "DEADLINE_EXCEEDED")])


class Failed(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: str) -> None:
        self._code = getattr(grpc.StatusCode, code)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "scripted"


class ScriptedChannel(PushChannel):
    """A PushChannel whose two calls go to an in-memory db-manager that follows a script."""

    def __init__(self, sends: list[Fate], lookups: list[Fate]) -> None:
        super().__init__("127.0.0.1:1")  # never dialled: both calls are replaced below
        self.sends, self.lookups = list(sends), list(lookups)
        self.stored: list[tuple[str, str, str]] = []
        self._report = self._fake_report
        self._get = self._fake_get

    def _fake_report(self, data: bytes, timeout: float) -> Any:
        stored, answer = self.sends.pop(0) if self.sends else (True, None)
        if stored:
            request = api_pb2.ReportObservationLogRequest.FromString(data)
            self.stored += [(m.time_stamp, m.metric.name, m.metric.value) for m in request.observation_log.metric_logs]
        if answer is not None:
            raise Failed(answer)
        return api_pb2.ReportObservationLogReply()

    def _fake_get(self, request: Any, timeout: float) -> Any:
        _, answer = self.lookups.pop(0) if self.lookups else (False, None)
        if answer is not None:
            raise Failed(answer)
        logs = [api_pb2.MetricLog(time_stamp=t, metric=api_pb2.Metric(name=n, value=v))
                for t, n, v in self.stored if request.start_time <= t <= request.end_time]
        return api_pb2.GetObservationLogReply(observation_log=api_pb2.ObservationLog(metric_logs=logs))


def rows(count: int, metrics: int) -> list[MetricLog]:
    stamper = Stamper()
    return [MetricLog(stamp, f"m{j}", str(i * metrics + j)) for i in range(count)
            for stamp in [stamper.next()] for j in range(metrics)]


POLICY = RetryPolicy(budget=1e9, call_timeout=1.0)


@settings(max_examples=300, deadline=None)
@given(sends=st.lists(SEND_FATES, max_size=12), lookups=st.lists(LOOKUP_FATES, max_size=6),
       count=st.integers(1, 40), metrics=st.integers(1, 3))
def test_every_row_is_stored_exactly_once_whatever_the_retryable_faults(
        sends: list[Fate], lookups: list[Fate], count: int, metrics: int) -> None:
    assert_stored_exactly_once(sends, lookups, count, metrics)


def assert_stored_exactly_once(sends: list[Fate], lookups: list[Fate], count: int, metrics: int) -> None:
    """The model's check: a batch delivered through these fates of sends and lookups lands once, all of it."""
    channel = ScriptedChannel(sends, lookups)
    batch = Batch(rows(count, metrics))
    expected = Counter((r.time_stamp, r.name, r.value) for r in batch.rows)
    deliver(channel, "t", batch, deadline=lambda: float("inf"), policy=POLICY, clock=FakeClock())
    assert Counter(channel.stored) == expected
    channel.close()


def test_a_batch_over_several_requests_never_resends_an_acknowledged_one() -> None:
    # 3 MiB per request: 9,000 rows with long values make several requests; the second one is refused once.
    channel = ScriptedChannel([(True, None), (False, "RESOURCE_EXHAUSTED")], [])
    big = [MetricLog(row.time_stamp, row.name, "1" + "0" * 600) for row in rows(4500, 2)]
    batch = Batch(big)
    deliver(channel, "t", batch, deadline=lambda: float("inf"), policy=POLICY, clock=FakeClock())
    assert Counter(channel.stored) == Counter(big) and len(channel.stored) == len(big)
    channel.close()


def test_the_deadline_ends_the_retries_with_what_is_left() -> None:
    channel = ScriptedChannel([(False, "UNAVAILABLE")] * 1000, [])
    clock = FakeClock()
    batch = Batch(rows(3, 1))
    with pytest.raises(CallFailed) as failed:
        deliver(channel, "t", batch, deadline=lambda: 5.0, policy=POLICY, clock=clock)
    assert failed.value.gave_up and failed.value.code == "UNAVAILABLE" and clock.t <= 5.0
    assert len(batch.rows) == 3 and not channel.stored
    channel.close()
