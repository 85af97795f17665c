"""The local db-manager as a real gRPC server on loopback, driven by our client and raw stubs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from katib_metrics.collector.dbmanager.server import AddressError, BindError, RunningServer, parse_listen, serve
from katib_metrics.collector.report import (
    DBManagerReporter,
    QueryError,
    ReportError,
    delete_observation_log,
    get_observation_log,
)
from katib_metrics.collector.report._generated import health_pb2, health_pb2_grpc
from katib_metrics.parsers.model import MetricLog

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = serve("127.0.0.1:0", tmp_path / "obs.db")
    yield running
    running.stop(None)


def health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)


LOGS = [
    MetricLog("2024-03-04T01:55:08.123456789Z", "loss", "0.5"),
    MetricLog("2024-03-04T10:55:07+09:00", "accuracy", "0.8"),
    MetricLog("2024-03-04T01:55:09Z", "loss", "0.25"),
    MetricLog("2024-03-04T01:55:09Z", "accuracy", "0.9"),
]


def test_report_then_get_round_trip_with_each_filter(server: RunningServer) -> None:
    with DBManagerReporter(server.address) as reporter:
        reporter.report("trial-a", LOGS)
        reporter.report("trial-b", LOGS[:1])
    everything = get_observation_log(server.address, "trial-a")
    assert everything == [
        MetricLog("2024-03-04T01:55:07Z", "accuracy", "0.8"),
        MetricLog("2024-03-04T01:55:08.123456Z", "loss", "0.5"),
        MetricLog("2024-03-04T01:55:09Z", "loss", "0.25"),
        MetricLog("2024-03-04T01:55:09Z", "accuracy", "0.9"),
    ]
    assert [r.value for r in get_observation_log(server.address, "trial-a", "loss")] == ["0.5", "0.25"]
    assert [
        r.value for r in get_observation_log(server.address, "trial-a", start="2024-03-04T01:55:08.123456Z")
    ] == [
        "0.5",
        "0.25",
        "0.9",
    ]
    assert [
        r.value for r in get_observation_log(server.address, "trial-a", end="2024-03-04T01:55:08.1234569Z")
    ] == [
        "0.8",
        "0.5",
    ]
    assert get_observation_log(
        server.address, "trial-a", "accuracy", "2024-03-04T01:55:08Z", "2024-03-04T01:55:09Z"
    ) == [MetricLog("2024-03-04T01:55:09Z", "accuracy", "0.9")]
    assert get_observation_log(server.address, "nobody") == []


def test_unparsable_time_stamp_is_invalid_argument_and_stores_nothing(server: RunningServer) -> None:
    with DBManagerReporter(server.address) as reporter, pytest.raises(ReportError) as info:
        reporter.report("t", [LOGS[0], MetricLog("yesterday", "loss", "1")])
    assert info.value.code == "INVALID_ARGUMENT" and not info.value.gave_up
    assert "'yesterday'" in str(info.value) and "nothing of this request was stored" in str(info.value)
    assert get_observation_log(server.address, "t") == []


def test_unparsable_bound_is_invalid_argument_naming_it(server: RunningServer) -> None:
    with pytest.raises(QueryError, match=r"INVALID_ARGUMENT: invalid end_time 'soon'"):
        get_observation_log(server.address, "t", end="soon")


def test_delete_removes_the_trial(server: RunningServer) -> None:
    with DBManagerReporter(server.address) as reporter:
        reporter.report("t", LOGS)
    delete_observation_log(server.address, "t")
    assert get_observation_log(server.address, "t") == []


def test_rows_survive_a_server_restart(tmp_path: Path) -> None:
    first = serve("127.0.0.1:0", tmp_path / "obs.db")
    with DBManagerReporter(first.address) as reporter:
        reporter.report("durable", LOGS)
    first.stop(None)
    second = serve("127.0.0.1:0", tmp_path / "obs.db")
    try:
        assert len(get_observation_log(second.address, "durable")) == 4
    finally:
        second.stop(None)


def test_concurrent_reporters_store_everything(server: RunningServer) -> None:
    errors: list[BaseException] = []

    def report(n: int) -> None:
        try:
            with DBManagerReporter(server.address, chunk_size=100) as reporter:
                reporter.report(
                    "busy", [MetricLog("2024-01-01T00:00:00Z", f"m{n}", str(i)) for i in range(500)]
                )
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=25)
    assert not errors
    rows = get_observation_log(server.address, "busy")
    assert len(rows) == 3000
    for n in range(6):  # each reporter's rows keep their order (equal times: insertion order)
        assert [r.value for r in rows if r.name == f"m{n}"] == [str(i) for i in range(500)]


def test_20000_rows_in_one_report(server: RunningServer) -> None:
    logs = [MetricLog(f"2024-01-01T00:00:{i % 60:02d}Z", "loss", str(i)) for i in range(20_000)]
    with DBManagerReporter(server.address) as reporter:
        result = reporter.report("many", logs)
    assert result.requests == 4
    assert len(get_observation_log(server.address, "many")) == 20_000


@pytest.mark.parametrize("service", ["", "grpc.health.v1.Health"])
def test_health_check_serves(server: RunningServer, service: str) -> None:
    assert health(server.address, service) == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_another_service_is_not_found(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as info:
        health(server.address, "api.v1.beta1.DBManager")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_port_in_use_is_a_bind_error(server: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(BindError, match=rf"cannot listen on 127.0.0.1:{server.port}: the port is in use"):
        serve(f"127.0.0.1:{server.port}", tmp_path / "other.db")


@pytest.mark.parametrize("listen", ["6789", "localhost:", "host:port", "127.0.0.1:70000", ""])
def test_bad_listen_address_is_an_address_error(listen: str) -> None:
    with pytest.raises(AddressError, match="expected HOST:PORT"):
        parse_listen(listen)


def test_listen_forms() -> None:
    assert parse_listen(":6789") == ("0.0.0.0", 6789)
    assert parse_listen("[::1]:0") == ("[::1]", 0)
    assert parse_listen("localhost:6789") == ("localhost", 6789)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand (lengths < 128 here)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_wire_format_written_by_hand_is_understood(server: RunningServer) -> None:
    # What any Katib client (Go, the Python SDK) puts on the wire, without our .proto in the loop.
    metric = _field(1, b"loss") + _field(2, b"0.125")
    metric_log = _field(1, b"2024-03-04T01:55:08Z") + _field(2, metric)
    request = _field(1, b"wire-trial") + _field(2, _field(1, metric_log))
    with grpc.insecure_channel(server.address) as channel:
        report = channel.unary_unary("/api.v1.beta1.DBManager/ReportObservationLog")
        assert report(request, timeout=5) == b""
        get = channel.unary_unary("/api.v1.beta1.DBManager/GetObservationLog")
        reply = get(_field(1, b"wire-trial") + _field(2, b"loss"), timeout=5)
    assert reply == _field(1, _field(1, metric_log))


def test_a_failing_database_is_not_serving_and_internal(server: RunningServer) -> None:
    server.store.close()
    assert health(server.address, "") == health_pb2.HealthCheckResponse.NOT_SERVING
    with DBManagerReporter(server.address) as reporter, pytest.raises(ReportError) as info:
        reporter.report("t", LOGS)
    assert info.value.code == "INTERNAL" and "is closed" in str(info.value)
