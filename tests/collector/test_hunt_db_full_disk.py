"""A db-manager on a full disk: a report is refused as retryable; push mode delivers it once there is room."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from katib_metrics import MetricsReporter
from katib_metrics.collector.report import get_observation_log
from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc
from tests.collector.push_doubles import trial_env

pytestmark = pytest.mark.timeout(90)
__all__ = ["trial_env"]  # a fixture, used by name

# A full disk without mounting one: a file-size limit (RLIMIT_FSIZE) on the db-manager's process, lifted
# when the test writes a line to its stdin. SIGXFSZ is ignored, so a write past the limit fails (EFBIG or a
# short write) instead of killing the process: SQLite reports an I/O error or "database or disk is full".
DB_MANAGER_ON_A_SMALL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from katib_metrics.collector.dbmanager import serve

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    server = serve("127.0.0.1:0", sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
    print(server.address, flush=True)
    sys.stdin.readline()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print("room", flush=True)
    sys.stdin.readline()
    server.stop(5)
""")


def big_request(trial: str, rows: int) -> api_pb2.ReportObservationLogRequest:
    logs = [api_pb2.MetricLog(time_stamp="2024-01-01T00:00:00Z", metric=api_pb2.Metric(name="pad", value=str(i)))
            for i in range(rows)]
    return api_pb2.ReportObservationLogRequest(trial_name=trial, observation_log=api_pb2.ObservationLog(
        metric_logs=logs))


def test_a_full_disk_is_retried_and_every_value_lands_once_when_there_is_room(
        trial_env: str, tmp_path: Path) -> None:
    script = tmp_path / "db_manager.py"
    script.write_text(DB_MANAGER_ON_A_SMALL_DISK)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "obs.db"), str(128 * 1024)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        address = proc.stdout.readline().strip()
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
            api_pb2_grpc.DBManagerStub(channel).ReportObservationLog(  # type: ignore[no-untyped-call]
                big_request("filler", 20_000), timeout=30)
        assert refused.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
        assert "nothing of this request was stored" in str(refused.value.details())

        reporter = MetricsReporter(address)
        for step in range(20_000):
            reporter.report({"loss": step})
        with reporter.changed:  # the full disk is retried, not taken as a refusal
            assert reporter.changed.wait_for(lambda: reporter.retries >= 2, 30), "the full disk was not retried"
        proc.stdin.write("room\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "room\n"
        started = time.monotonic()
        assert reporter.flush(60), "not every value was stored once the disk had room"
        assert reporter.close() == 0
        assert time.monotonic() - started < 30
        rows = get_observation_log(address, trial_env, "loss")
        assert [int(row.value) for row in rows] == list(range(20_000))  # each once, in order
        assert get_observation_log(address, "filler") == []  # the refused request left nothing behind
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
