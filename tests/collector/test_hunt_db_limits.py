"""The local db-manager's answers to huge bad inputs arrive as themselves: INVALID_ARGUMENT, not a retryable error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc

pytestmark = pytest.mark.timeout(30)

GOOD = "2024-01-01T00:00:00Z"


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[RunningServer, api_pb2_grpc.DBManagerStub]]:
    server = serve("127.0.0.1:0", tmp_path / "obs.db")
    try:
        with grpc.insecure_channel(server.address) as channel:
            yield server, api_pb2_grpc.DBManagerStub(channel)  # type: ignore[no-untyped-call]
    finally:
        server.stop(None)


def report(stamp: str, name: str) -> api_pb2.ReportObservationLogRequest:
    logs = [api_pb2.MetricLog(time_stamp=GOOD, metric=api_pb2.Metric(name="ok", value="1")),
            api_pb2.MetricLog(time_stamp=stamp, metric=api_pb2.Metric(name=name, value="2"))]
    return api_pb2.ReportObservationLogRequest(trial_name="t", observation_log=api_pb2.ObservationLog(
        metric_logs=logs))


# The quoted value used to make the status details longer than a gRPC client takes (16 KiB): the client
# saw RESOURCE_EXHAUSTED ("received metadata size exceeds hard limit"), which reporters retry for minutes.
@pytest.mark.parametrize(("stamp", "name", "field"), [
    pytest.param("x" * 100_000, "loss", "time_stamp", id="huge-stamp"),
    pytest.param("yesterday", "\N{GRINNING FACE}" * 50_000, "time_stamp", id="huge-non-ascii-name"),
])
def test_a_huge_bad_row_is_invalid_argument_and_stores_nothing(
        stub: tuple[RunningServer, api_pb2_grpc.DBManagerStub], stamp: str, name: str, field: str) -> None:
    server, client = stub
    with pytest.raises(grpc.RpcError) as refused:
        client.ReportObservationLog(report(stamp, name), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    details = str(refused.value.details())
    assert details.startswith(f"invalid {field} ") and "characters cut" in details
    assert details.endswith("nothing of this request was stored") and len(details) <= 500
    assert server.store.row_count("t") == 0


def test_a_huge_bad_time_bound_is_invalid_argument(stub: tuple[RunningServer, api_pb2_grpc.DBManagerStub]) -> None:
    _, client = stub
    with pytest.raises(grpc.RpcError) as refused:
        client.GetObservationLog(api_pb2.GetObservationLogRequest(trial_name="t", end_time="z" * 100_000), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert str(refused.value.details()).startswith("invalid end_time 'zzz")
