"""The local db-manager's storage: Katib's `observation_logs` table in SQLite, with Katib's query rules.

    StoreError              base of what the store raises on purpose
    ├── StoreOpenError      the database file cannot be created, opened or is not ours
    ├── InvalidTimestamp    a time stamp or time bound is not RFC3339 (gRPC INVALID_ARGUMENT)
    └── Abandoned           the reporter stopped waiting before its rows could be written (nothing stored)

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
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from katib_metrics.parsers.model import CollectorSpec, MetricLog, ObjectiveType, Strategy
from katib_metrics.parsers.timestamps import Instant, format_rfc3339, to_storage

__all__ = ["Abandoned", "InvalidTimestamp", "ObservationStore", "StoreError", "StoreOpenError", "TrialInfo",
           "default_db_path", "resolve_db_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observation_logs (
    trial_name  TEXT    NOT NULL,
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,  -- UTC microseconds since 1970-01-01 (Katib: DATETIME(6))
    metric_name TEXT    NOT NULL,
    value       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS observation_logs_trial_time ON observation_logs (trial_name, time, id);
CREATE TABLE IF NOT EXISTS trials (  -- ours, not Katib's: what `run` collected each trial for
    name           TEXT    PRIMARY KEY,
    created        INTEGER NOT NULL,             -- UTC microseconds when `run` started it
    metric_names   TEXT    NOT NULL DEFAULT '[]', -- JSON list, the objective first
    objective_type TEXT    NOT NULL DEFAULT '',
    strategies     TEXT    NOT NULL DEFAULT '{}', -- JSON {metric: min|max|latest}
    resend_to      TEXT    NOT NULL DEFAULT ''    -- a db-manager these rows failed to reach
);
PRAGMA user_version = 1;
"""
_CHECK = "SELECT trial_name, id, time, metric_name, value FROM observation_logs LIMIT 1"
_INSERT = "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES (?, ?, ?, ?)"
_MICROS = 1_000_000
_BUSY_TIMEOUT_SECONDS = 30.0


class StoreError(Exception):
    """Base of the store's errors."""


class StoreOpenError(StoreError):
    """The database file cannot be used; the message names the path and what to do."""


class Abandoned(StoreError):
    """A report whose caller no longer waits for it (its deadline passed while the database was locked)."""


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


def resolve_db_path(path: str | os.PathLike[str] | None) -> Path:
    """`--db` as given, whose directory must exist (a typo is not a new directory), else the default."""
    if path is None:
        return default_db_path()
    chosen = Path(path)
    if not chosen.parent.is_dir():
        raise StoreOpenError(
            f"--db {chosen}: directory {chosen.parent} does not exist; create it first "
            f"(mkdir -p {chosen.parent}) or choose another --db file"
        )
    return chosen


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


@dataclass(frozen=True, slots=True)
class TrialInfo:
    """What `run` collected a trial for: its metrics (objective first), direction and strategies."""

    name: str
    created: str  # RFC3339
    metric_names: tuple[str, ...] = ()
    objective_type: str = ""
    strategies: dict[str, str] = field(default_factory=dict)
    resend_to: str = ""  # the db-manager that did not take these rows, if any

    def spec(self) -> CollectorSpec:
        """The spec that reduces this trial's rows as `run` did."""
        return CollectorSpec(self.metric_names, objective_type=ObjectiveType.parse(self.objective_type),
                             strategy_overrides={name: Strategy(text) for name, text in self.strategies.items()})


def _info(name: str, created: int, metric_names: str | None, objective_type: str | None,
          strategies: str | None, resend_to: str | None) -> TrialInfo:
    return TrialInfo(name, _text(created), tuple(json.loads(metric_names or "[]")), objective_type or "",
                     dict(json.loads(strategies or "{}")), resend_to or "")


class ObservationStore:
    """Observation logs in one SQLite file, safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._busy: set[sqlite3.Connection] = set()  # in use by a thread: closed by it, when it is done
        self._closed = False
        try:
            with self._using() as conn:
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
        return conn

    def _thread_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
            with self._lock:
                self._connections.append(conn)  # closed by `close()` (or by `_using` if closed already)
        return conn

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, which `close()` leaves open until the statement using it is done:
        closing a connection under a statement running in another thread crashes the process."""
        conn = self._thread_conn()
        with self._lock:
            closed = self._closed
            if not closed:
                self._busy.add(conn)
        if closed:
            conn.close()  # one this thread opened after `close()` is not left open
            raise StoreError(f"the observation database {self.path} is closed")
        try:
            yield conn
        finally:
            with self._lock:
                self._busy.discard(conn)
                last = self._closed
            if last:  # `close()` came while this thread used it, or before it opened it
                conn.close()

    def report(self, trial_name: str, logs: Sequence[MetricLog], wanted: Callable[[], bool] = lambda: True) -> int:
        """Append `logs` atomically; rows with an empty time stamp are skipped. Returns rows stored.

        `wanted()` is asked once the write lock is held: False rolls back and raises `Abandoned`. A caller
        whose deadline passed while the database was locked has been told the call failed; storing its rows
        then would store them twice, once more when it sends them again. (Not asked again before committing:
        a write slower than the caller's deadline would then never be stored.)"""
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
        with self._using() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not wanted():
                    raise Abandoned(f"the caller stopped waiting for {len(rows)} rows of trial {trial_name!r}")
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    conn.execute("ROLLBACK")
                raise
        return len(rows)

    def _fetch(self, sql: str, params: Sequence[str | int] = ()) -> list[Any]:
        with self._using() as conn:
            return conn.execute(sql, params).fetchall()

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
        rows = self._fetch(" ".join(sql), params)
        return [MetricLog(_text(micros), name, value) for micros, name, value in rows]

    def batches(self, trial_name: str, size: int = 20_000, start_time: str = "") -> Iterator[list[MetricLog]]:
        """The trial's rows in time order (from `start_time` on, inclusive, when given), `size` at a time, each
        batch its own statement (keyset by time and id, on the index): reading a trial of any length holds
        one batch."""
        after = (_micros("start_time", start_time) if start_time else -(1 << 63), -1)
        while True:
            rows = self._fetch("SELECT time, id, metric_name, value FROM observation_logs WHERE trial_name = ? "
                               "AND (time, id) > (?, ?) ORDER BY time, id LIMIT ?", (trial_name, *after, size))
            if rows:
                yield [MetricLog(_text(micros), name, value) for micros, _, name, value in rows]
                after = (rows[-1][0], rows[-1][1])
            if len(rows) < size:
                return

    def delete(self, trial_name: str) -> int:
        """Remove every row of the trial; returns how many there were."""
        with self._using() as conn:
            return conn.execute("DELETE FROM observation_logs WHERE trial_name = ?", (trial_name,)).rowcount

    def record_trial(self, info: TrialInfo) -> None:
        """Keep what a trial was collected for; a trial recorded again keeps its first creation time."""
        self._fetch(
            "INSERT INTO trials (name, created, metric_names, objective_type, strategies, resend_to) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET metric_names = excluded.metric_names, "
            "objective_type = excluded.objective_type, strategies = excluded.strategies, "
            "resend_to = excluded.resend_to",
            (info.name, _micros("created", info.created), json.dumps(list(info.metric_names)),
             info.objective_type, json.dumps(info.strategies), info.resend_to),
        )

    def trials(self) -> list[tuple[TrialInfo, int]]:
        """Every trial with rows or a record, and its row count; `created` is its first row's time if unrecorded."""
        rows = self._fetch(
            "SELECT o.trial_name, COALESCE(t.created, o.first), o.n, t.metric_names, t.objective_type, "
            "t.strategies, t.resend_to FROM (SELECT trial_name, MIN(time) AS first, COUNT(*) AS n "
            "FROM observation_logs GROUP BY trial_name) AS o LEFT JOIN trials AS t ON t.name = o.trial_name "
            "UNION ALL SELECT name, created, 0, metric_names, objective_type, strategies, resend_to FROM trials "
            "WHERE name NOT IN (SELECT trial_name FROM observation_logs)"
        )
        return [(_info(name, created, *rest), count) for name, created, count, *rest in rows]

    def trial(self, name: str) -> TrialInfo | None:
        rows = self._fetch(
            "SELECT name, created, metric_names, objective_type, strategies, resend_to FROM trials WHERE name = ?",
            (name,),
        )
        return _info(*rows[0]) if rows else None

    def row_count(self, trial_name: str) -> int:
        return int(self._fetch("SELECT COUNT(*) FROM observation_logs WHERE trial_name = ?", (trial_name,))[0][0])

    def ping(self) -> bool:
        """`SELECT 1`, as Katib's health check does."""
        try:
            return self._fetch("SELECT 1") == [(1,)]
        except (sqlite3.Error, StoreError):
            return False

    def close(self) -> None:
        """Close the database; a statement running in another thread finishes first, on its own."""
        with self._lock:
            self._closed = True
            idle = [conn for conn in self._connections if conn not in self._busy]
            self._connections = []
        for conn in idle:
            conn.close()
