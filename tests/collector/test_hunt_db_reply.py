"""GetObservationLog's reply, written as bytes by the local db-manager: what protobuf writes, in a bounded memory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector.dbmanager import ObservationStore
from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc
from katib_metrics.collector.report.wire import encode_reply
from katib_metrics.parsers.model import MetricLog

pytestmark = pytest.mark.timeout(60)

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)  # what a proto3 string can hold


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.builds(MetricLog, st.text(min_size=1, max_size=40), TEXT, TEXT), max_size=30))
def test_the_reply_is_byte_for_byte_what_the_generated_classes_write(rows: list[MetricLog]) -> None:
    generated = api_pb2.GetObservationLogReply(observation_log=api_pb2.ObservationLog(metric_logs=[
        api_pb2.MetricLog(time_stamp=row.time_stamp, metric=api_pb2.Metric(name=row.name, value=row.value))
        for row in rows]))
    assert encode_reply(rows) == generated.SerializeToString()


ROWS = 300_000


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak memory from /proc")
def test_a_trial_of_300000_rows_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # Measured: 519 MiB peak for the db-manager process when each row became a generated message, 187 now.
    db = tmp_path / "obs.db"
    store = ObservationStore(db)
    for start in range(0, ROWS, 50_000):
        store.report("long", [MetricLog(f"2024-01-01T00:00:00.{i:06d}Z", "loss", str(i / 1000))
                              for i in range(start, start + 50_000)])
    store.close()
    server = subprocess.Popen([sys.executable, "-m", "katib_metrics", "db-manager", "--listen", "127.0.0.1:0",
                               "--db", str(db)], stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        address = ""
        for line in server.stderr:
            if match := re.search(r"listening on (127\.0\.0\.1:\d+)", line):
                address = match.group(1)
                break
        options = [("grpc.max_receive_message_length", 2**31 - 1)]
        with grpc.insecure_channel(address, options=options) as channel:
            reply = api_pb2_grpc.DBManagerStub(channel).GetObservationLog(  # type: ignore[no-untyped-call]
                api_pb2.GetObservationLogRequest(trial_name="long"), timeout=50)
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak_mib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024  # type: ignore[union-attr]
    finally:
        server.terminate()
        server.wait(timeout=20)
        if server.stderr is not None:
            server.stderr.close()
    logs = reply.observation_log.metric_logs
    assert len(logs) == ROWS and logs[-1].metric.value == str((ROWS - 1) / 1000)
    assert peak_mib < 320, f"the db-manager peaked at {peak_mib} MiB reading {ROWS} rows"
