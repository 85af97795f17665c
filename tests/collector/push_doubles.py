"""Push-mode test helpers: a recording DBManager that also answers GetObservationLog, environment set-up."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from katib_metrics.collector.report._generated import api_pb2
from katib_metrics.parsers.timestamps import parse_rfc3339
from tests.collector.grpc_doubles import RecordingDBManager, start_server


@dataclass
class QueryableRecorder(RecordingDBManager):
    """A RecordingDBManager whose GetObservationLog answers from what it recorded (time bounds inclusive)."""

    lookups: int = 0

    def GetObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.lookups += 1
        start, end = parse_rfc3339(request.start_time), parse_rfc3339(request.end_time)
        logs = [
            api_pb2.MetricLog(time_stamp=stamp, metric=api_pb2.Metric(name=name, value=value))
            for received in list(self.received) if received.trial == request.trial_name
            for stamp, name, value in received.rows
            if (start is None or start <= parse_rfc3339(stamp))  # type: ignore[operator]
            and (end is None or parse_rfc3339(stamp) <= end)  # type: ignore[operator]
        ]
        return api_pb2.GetObservationLogReply(observation_log=api_pb2.ObservationLog(metric_logs=logs))


@pytest.fixture
def trial_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KATIB_TRIAL_NAME", "push-trial")
    monkeypatch.delenv("KATIB_DB_MANAGER_ADDRESS", raising=False)
    return "push-trial"


def serving(servicer: RecordingDBManager) -> Iterator[tuple[RecordingDBManager, str]]:
    server, address = start_server(servicer)
    try:
        yield servicer, address
    finally:
        server.stop(None)
