"""Hand-encoded report requests: byte for byte what the generated classes write, and stored as sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector.dbmanager.server import RunningServer, serve
from katib_metrics.collector.report import DBManagerReporter, get_observation_log
from katib_metrics.collector.report._generated import api_pb2
from katib_metrics.collector.report.wire import encode_requests, encode_rows
from katib_metrics.parsers.model import MetricLog

pytestmark = pytest.mark.timeout(60)


def reference(trial: str, rows: list[MetricLog]) -> bytes:
    """The request as protobuf writes it, each row filled the way the reporter used to fill it."""
    olog = api_pb2.ObservationLog()
    for stamp, name, value in rows:
        metric = olog.metric_logs.add(time_stamp=stamp).metric
        metric.name = name
        metric.value = value
    request = api_pb2.ReportObservationLogRequest(trial_name=trial, observation_log=olog)
    return bytes(request.SerializeToString())


def one_request(trial: str, rows: list[MetricLog]) -> bytes:
    (request,) = encode_requests(trial, rows, len(rows), 1 << 40)
    assert request.rows == len(rows)
    return request.data


texts = st.one_of(
    st.sampled_from(["", "loss", "0.5", "2024-03-04T01:55:08.123Z", "unavailable"]),
    st.text(max_size=20),
    st.text(alphabet="abc", min_size=100, max_size=300),  # lengths across the one-byte varint limit
)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.lists(st.tuples(texts, texts, texts), min_size=1, max_size=30))
def test_requests_equal_protobufs_own_bytes(trial: str, raw: list[tuple[str, str, str]]) -> None:
    rows = [MetricLog(*row) for row in raw]
    assert one_request(trial, rows) == reference(trial, rows)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_100_000])
def test_every_varint_length_width(size: int) -> None:
    rows = [MetricLog("2024-03-04T01:55:08Z", "m", "9" * size), MetricLog("", "n", "1")]
    assert one_request("trial", rows) == reference("trial", rows)


def test_the_bytes_path_and_the_text_path_agree() -> None:
    rows = [MetricLog("2024-03-04T01:55:08Z", "loss", f"0.{i}") for i in range(50)]
    text_path = one_request("t", rows)
    assert text_path == reference("t", rows)
    assert b"".join(encode_rows(rows)) == api_pb2.ObservationLog.FromString(
        api_pb2.ReportObservationLogRequest.FromString(text_path).observation_log.SerializeToString()
    ).SerializeToString()


@pytest.fixture
def dbmanager(tmp_path: Path) -> Iterator[RunningServer]:
    running = serve("127.0.0.1:0", tmp_path / "obs.db")
    yield running
    running.stop(None)


def test_the_db_manager_stores_what_was_encoded(dbmanager: RunningServer) -> None:
    rows = [
        MetricLog("2024-03-04T01:55:08Z", "loss", "0.5"),
        MetricLog("2024-03-04T01:55:09.5Z", "précision", "0.25"),  # a non-ASCII name: the bytes path
        MetricLog("2024-03-04T01:55:10Z", "loss", "1" + "0" * 300),  # a record over 127 bytes
        *(MetricLog(f"2024-03-04T01:56:{i % 60:02d}Z", "acc", str(i / 7)) for i in range(6000)),
    ]
    with DBManagerReporter(dbmanager.address, max_chunk_bytes=100_000) as reporter:
        result = reporter.report("trial-w", rows)
    assert result.rows == len(rows) and result.requests > 2  # cut by bytes, then by rows
    stored = get_observation_log(dbmanager.address, "trial-w")
    key = sorted((r.time_stamp, r.name, r.value) for r in rows)
    assert sorted((r.time_stamp, r.name, r.value) for r in stored) == key
