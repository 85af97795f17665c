"""Push mode into a db-manager whose database stays locked past several attempts: each value is stored once."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import katib_metrics
from katib_metrics.collector import push
from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import RetryPolicy
from tests.collector.push_doubles import trial_env

pytestmark = pytest.mark.timeout(60)
__all__ = ["trial_env"]  # a fixture, used by name


def waiting_inserts() -> int:
    """Server threads inside ObservationStore.report holding a connection (waiting for the write lock)."""
    return sum(1 for frame in sys._current_frames().values()
               if frame.f_code.co_name == "report" and "conn" in frame.f_locals)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_attempts_that_timed_out_on_a_locked_database_are_not_stored_when_it_frees(
        trial_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each attempt gives up after 0.3 s (20 s in use); the database stays locked (another writer, a backup)
    # for three attempts. The timed-out inserts used to wait on and be stored when the lock was released,
    # after the client had looked them up (not there) and sent them again: the value was stored 3 times.
    monkeypatch.setattr(push, "POLICY", RetryPolicy(budget=1e9, call_timeout=0.3, initial_backoff=0.05))
    db = tmp_path / "obs.db"
    server = serve("127.0.0.1:0", db)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        errors: list[BaseException] = []

        def report() -> None:
            try:
                katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=server.address, timeout=30)
            except BaseException as err:  # surfaced below
                errors.append(err)

        reporter = threading.Thread(target=report)
        reporter.start()
        wait_for(lambda: waiting_inserts() >= 3)
        blocker.execute("ROLLBACK")
        reporter.join(30)
        assert not reporter.is_alive() and not errors
        wait_for(lambda: waiting_inserts() == 0)
        assert [(row.name, row.value) for row in server.store.query(trial_env)] == [("loss", "0.5")]
    finally:
        blocker.close()
        server.stop(None)
