"""The local db-manager's storage: Katib's `observation_logs` table in SQLite, with Katib's query rules.

    StoreError              base of what the store raises on purpose
    ├── StoreOpenError      the database file cannot be created, opened or is not ours
    └── InvalidTimestamp    a time stamp or time bound is not RFC3339 (gRPC INVALID_ARGUMENT)

Schema: Katib's columns (trial_name, id, time, metric_name, value). SQLite has no DATETIME(6), so
`time` holds UTC microseconds since the Unix epoch as an INTEGER: the same precision as Katib's
MySQL column (sub-microsecond digits truncated, as MySQL's `.999999` layout does), compared and
ordered exactly, and free of `datetime`'s year-1 limit. Rows come back ordered by time, then by
insertion (`id`), so equal times keep their reported order (Katib leaves that order unspecified).

Writes are atomic per request; an empty request (or one whose rows all lack a time stamp) stores
nothing and succeeds, where Katib's SQL insert fails with a syntax error. The database runs in WAL
mode with `synchronous=FULL`, so an acknowledged report survives a crash, and with one connection
per thread, so concurrent reporters and readers do not block each other longer than a commit.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.timestamps import Instant, format_rfc3339, to_storage

__all__ = ["InvalidTimestamp", "ObservationStore", "StoreError", "StoreOpenError", "default_db_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observation_logs (
    trial_name  TEXT    NOT NULL,
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,  -- UTC microseconds since 1970-01-01 (Katib: DATETIME(6))
    metric_name TEXT    NOT NULL,
    value       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS observation_logs_trial_time ON observation_logs (trial_name, time, id);
"""
_CHECK = "SELECT trial_name, id, time, metric_name, value FROM observation_logs LIMIT 1"
_INSERT = "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES (?, ?, ?, ?)"
_MICROS = 1_000_000
_BUSY_TIMEOUT_SECONDS = 30.0


class StoreError(Exception):
    """Base of the store's errors."""


class StoreOpenError(StoreError):
    """The database file cannot be used; the message names the path and what to do."""


class InvalidTimestamp(StoreError, ValueError):
    """A `time_stamp`, `start_time` or `end_time` that Go's RFC3339Nano parser would reject."""

    def __init__(self, field: str, value: str, where: str = "") -> None:
        self.field = field
        self.value = value
        super().__init__(
            f"invalid {field} {value!r}{where}: expected RFC3339 like 2024-03-04T01:55:08.12Z or "
            "2024-03-04T10:55:08+09:00"
        )


def default_db_path() -> Path:
    """Where `db-manager` and `run` keep observations unless told otherwise (the user's data dir)."""
    import platformdirs  # only the default needs it

    return platformdirs.user_data_path("katib-metrics") / "observations.db"


@functools.lru_cache(maxsize=4096)  # the metrics of one log line share its time stamp
def _storage_micros(text: str) -> int | None:
    instant = to_storage(text)
    return None if instant is None else instant.seconds * _MICROS + instant.nanos // 1000


def _micros(field: str, text: str, where: str = "") -> int:
    micros = _storage_micros(text)
    if micros is None:
        raise InvalidTimestamp(field, text, where)
    return micros


@functools.lru_cache(maxsize=4096)
def _text(micros: int) -> str:
    seconds, fraction = divmod(micros, _MICROS)
    return format_rfc3339(Instant(seconds, fraction * 1000))


class ObservationStore:
    """Observation logs in one SQLite file, safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        conn = self._open()
        try:
            conn.executescript(_SCHEMA)
            conn.execute(_CHECK).fetchall()
        except sqlite3.DatabaseError as err:
            self.close()
            raise StoreOpenError(
                f"{self.path} is not a usable observation database ({err}); choose another --db file"
            ) from err

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except (OSError, sqlite3.Error) as err:
            raise StoreOpenError(
                f"cannot open the observation database {self.path}: {err}; check that the directory "
                "exists and is writable, or choose another --db file"
            ) from err
        with self._lock:
            self._connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the observation database {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    def report(self, trial_name: str, logs: Sequence[MetricLog]) -> int:
        """Append `logs` atomically; rows with an empty time stamp are skipped. Returns rows stored."""
        rows = [
            (
                trial_name,
                _micros("time_stamp", log.time_stamp, f" in row {index} (metric {log.name!r})"),
                log.name,
                log.value,
            )
            for index, log in enumerate(logs)
            if log.time_stamp
        ]
        if not rows:
            return 0
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return len(rows)

    def query(
        self, trial_name: str, metric_name: str = "", start_time: str = "", end_time: str = ""
    ) -> list[MetricLog]:
        """Katib's GetObservationLog: exact metric name and inclusive bounds when non-empty, time order."""
        sql = ["SELECT time, metric_name, value FROM observation_logs WHERE trial_name = ?"]
        params: list[str | int] = [trial_name]
        if metric_name:
            sql.append("AND metric_name = ?")
            params.append(metric_name)
        if start_time:
            sql.append("AND time >= ?")
            params.append(_micros("start_time", start_time))
        if end_time:
            sql.append("AND time <= ?")
            params.append(_micros("end_time", end_time))
        sql.append("ORDER BY time, id")
        rows = self._conn().execute(" ".join(sql), params).fetchall()
        return [MetricLog(_text(micros), name, value) for micros, name, value in rows]

    def delete(self, trial_name: str) -> int:
        """Remove every row of the trial; returns how many there were."""
        return (
            self._conn().execute("DELETE FROM observation_logs WHERE trial_name = ?", (trial_name,)).rowcount
        )

    def ping(self) -> bool:
        """`SELECT 1`, as Katib's health check does."""
        try:
            row: tuple[int] | None = self._conn().execute("SELECT 1").fetchone()
            return row == (1,)
        except (sqlite3.Error, StoreError):
            return False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
