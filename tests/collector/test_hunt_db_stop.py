"""The local db-manager stopped while a report waits on the database: no crash, no hang; the cut call stores nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

# Another connection holds SQLite's write lock, so the server's insert waits inside SQLite (busy timeout).
# While it waits the server is stopped with no grace and its store closed; then the lock is released.
# Runs in a subprocess: closing a connection under a running statement used to kill the process (SIGSEGV).
STOP_WHILE_WAITING = textwrap.dedent("""
    import json, sqlite3, sys, threading, time
    import grpc
    from katib_metrics.collector.dbmanager import serve
    from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc

    db = sys.argv[1]
    server = serve("127.0.0.1:0", db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    logs = [api_pb2.MetricLog(time_stamp="2024-01-01T00:00:00Z", metric=api_pb2.Metric(name="loss", value=str(i)))
            for i in range(100)]
    request = api_pb2.ReportObservationLogRequest(trial_name="t", observation_log=api_pb2.ObservationLog(
        metric_logs=logs))
    outcome = {}

    def call():
        with grpc.insecure_channel(server.address) as channel:
            try:
                api_pb2_grpc.DBManagerStub(channel).ReportObservationLog(request, timeout=30)
                outcome["code"] = "OK"
            except grpc.RpcError as err:
                outcome["code"] = err.code().name

    def inside_report():
        # a server thread that is past taking its connection in ObservationStore.report
        frames = sys._current_frames().values()
        return any(f.f_code.co_name == "report" and "conn" in f.f_locals for f in frames)

    def wait(condition):
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.001)

    client = threading.Thread(target=call)
    client.start()
    wait(inside_report)
    started = time.monotonic()
    server.stop(grace=None)
    outcome["stop_seconds"] = time.monotonic() - started
    blocker.execute("ROLLBACK")
    client.join(30)
    wait(lambda: not inside_report())  # the server's worker finishes its insert
    outcome["rows"] = sqlite3.connect(db).execute("SELECT COUNT(*) FROM observation_logs").fetchone()[0]
    print(json.dumps(outcome))
""")


def test_stopping_the_db_manager_while_a_report_waits_on_the_database(tmp_path: Path) -> None:
    script = tmp_path / "stop.py"
    script.write_text(STOP_WHILE_WAITING)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "obs.db")], capture_output=True,
                            text=True, timeout=50)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    outcome = json.loads(result.stdout)
    assert outcome["stop_seconds"] < 5, "stop() waited for the busy database"
    assert outcome["code"] != "OK"  # the call was cut by the stop (UNAVAILABLE or CANCELLED) ...
    assert outcome["rows"] == 0  # ... so its insert, let finish after the stop, stores nothing: the client resends

