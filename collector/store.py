"""The store: every MetricLog still to report, in arrival order, and the running min/max/latest per metric.

The pipeline writes, reporters read: `take()` hands the oldest unreported rows to the incremental
reporter (`collector.shipper`), `chunks()` gives what is left at the end (plus difference 4's
unavailable row), and the `CollectionStatus` methods feed `/metrics`. Memory stays bounded however
long the log: beyond `memory_rows` rows the store spills them to an unlinked temporary file (in the
metrics volume by default: the sidecar's root filesystem is read-only) and reads them back in order,
from a cursor, when reporting. Nothing is dropped: if no spill file can be created, or it cannot grow
(a full volume), rows stay in memory, and once a reporter takes rows (`hold_back()`), `add()` waits
for it to take some rather than grow memory: the reading pauses, the lines wait in their file.

Invariant: the unreported rows are the spill file from `_read_at` to its end, then `_rows`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from katib_metrics.parsers.model import CollectorSpec, MetricLog, MetricSummary
from katib_metrics.parsers.observation import unavailable_rows
from katib_metrics.parsers.stats import ParseStats
from katib_metrics.parsers.strategies import Reducer

__all__ = ["MetricStore"]

log = logging.getLogger(__name__)

MEMORY_ROWS = 10_000
"""About 1.5 MiB of rows; the incremental reporter takes them at 5,000, so only a backlog (a stalled sidecar, an
unreachable db-manager) spills, and memory stays flat however long it grows."""

_READ_SIZE = 1 << 18
SPILL_RETRY = 10.0
"""After a failed spill write (a full volume), try the spill file again no sooner than this many seconds later."""


def _spill_line(row: MetricLog) -> str:
    """`\tTIME\tNAME\tVALUE` (fast), or a JSON array when a field holds a tab or a line break."""
    line = f"\t{row.time_stamp}\t{row.name}\t{row.value}\n"
    if line.count("\t") == 3 and line.count("\n") == 1 and "\r" not in line:
        return line
    return json.dumps([row.time_stamp, row.name, row.value]) + "\n"


def _row(line: bytes) -> MetricLog:
    if line[:1] == b"\t":
        time_stamp, name, value = line[1:].decode("utf-8").split("\t")
        return MetricLog(time_stamp, name, value)
    time_stamp, name, value = json.loads(line)
    return MetricLog(time_stamp, name, value)


class MetricStore:
    """Rows to report plus their running summary; thread-safe (one writer, one reporter, many readers)."""

    def __init__(self, spec: CollectorSpec, *, stats: ParseStats | None = None, events: bool = False,
                 memory_rows: int = MEMORY_ROWS, spill_dir: Path | None = None) -> None:
        self.spec = spec
        self.stats = stats if stats is not None else ParseStats()
        self.events = events  # the stats count TensorFlow events, not lines
        self.memory_rows = memory_rows
        self.spill_dir = spill_dir
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)
        self._reducer = Reducer(spec)
        self._rows: list[MetricLog] = []
        self._objective_seen = spec.objective is None
        self._spill: BinaryIO | None = None
        self._spill_failed = False  # no spill file could be created: never tried again
        self._spill_retry_at = 0.0  # a spill write failed: not tried again before this (monotonic) time
        self._hold_back = False  # a reporter takes rows: `add` waits for room rather than grow memory
        self._room = threading.Condition(self._lock)
        self.stalled_since: float | None = None  # `add` waits for room and no row was taken since (monotonic)
        self._read_at = 0  # spill file offset of the oldest unreported spilled row
        self._write_at = 0  # spill file size
        self._spilled_unread = 0
        self._collected = 0
        self._taken = 0
        self.cut: int | None = None  # rows collected when the last `all_rows()` walk began
        self._wanted: int | None = None  # what a `wait_unreported` waits for: wake it only then

    def add(self, logs: Sequence[MetricLog]) -> None:
        if not logs:
            return
        with self._lock:
            self._rows.extend(logs)
            self._reducer.add_all(logs)
            if not self._objective_seen:
                self._objective_seen = any(row.name == self.spec.objective for row in logs)
            self._collected += len(logs)
            if len(self._rows) >= self.memory_rows:
                self._spill_rows()
            if self._wanted is not None and self._collected - self._taken >= self._wanted:
                self._added.notify_all()  # not on every add: each wake-up costs the reading thread the GIL
            if self._hold_back and len(self._rows) >= self.memory_rows:
                self._wait_for_room()

    def _wait_for_room(self) -> None:
        """Under the lock: rows cannot be spilled; wait until a reporter took some (or no longer takes)."""
        self.stalled_since = time.monotonic()
        try:
            while self._hold_back and len(self._rows) >= self.memory_rows:
                self._added.notify_all()  # the reporter may wait for fewer rows than we hold
                self._room.wait(1.0)
        finally:
            self.stalled_since = None

    def hold_back(self, on: bool = True) -> None:
        """While on, rows that cannot be spilled make `add()` wait for `take()` instead of growing memory."""
        with self._lock:
            self._hold_back = on
            self._room.notify_all()

    def add_reported(self, logs: Sequence[MetricLog]) -> None:
        """Rows the db-manager already holds (push mode: the training reported them itself). They count in
        the summaries and as the objective's presence (no `unavailable` row), and are never reported again."""
        with self._lock:
            self._reducer.add_all(logs)
            if not self._objective_seen:
                self._objective_seen = any(row.name == self.spec.objective for row in logs)

    def _open_spill(self) -> BinaryIO | None:
        for directory in (self.spill_dir, None):
            if directory is not None and not directory.is_dir():
                continue
            try:
                return tempfile.TemporaryFile("w+b", buffering=0, dir=directory, prefix=".katib-rows-")
            except OSError as err:  # without `directory`, the error may be that no temporary directory is usable
                where = directory or tempfile.tempdir or "a temporary directory"
                log.warning("cannot spill rows to %s (%s)", where, err)
        return None

    def _spill_rows(self) -> None:
        """Under the lock: move the rows in memory to the end of the spill file, if it takes them."""
        if self._spill is None and not self._spill_failed:
            self._spill = self._open_spill()
            if self._spill is None:
                self._spill_failed = True
                log.warning("keeping rows in memory: no writable directory for the spill file (give the sidecar "
                            "--spill-dir); reading waits for the reporter when %d are waiting", self.memory_rows)
        if self._spill is None or time.monotonic() < self._spill_retry_at:
            return
        data = "".join(_spill_line(row) for row in self._rows).encode("utf-8")
        if self._write(self._spill.fileno(), data):
            self._spilled_unread += len(self._rows)
            self._rows = []

    def _write(self, fd: int, data: bytes) -> bool:
        """Append `data` to the spill file whole, or not at all (False: it cannot grow now)."""
        view, at = memoryview(data), self._write_at
        try:
            while view:  # a short write is continued; a full volume raises
                written = os.pwrite(fd, view, at)
                at += written
                view = view[written:]
        except OSError as err:
            # The rows stay in memory; a partial row written is beyond `_write_at`, so never read, and
            # overwritten by the next spill. Truncating gives the space back to the volume.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._write_at)
            if not self._spill_retry_at:
                log.warning("cannot spill rows (%s): keeping them in memory; reading waits for the reporter "
                            "when %d are waiting (trying the spill file again every %.0fs)", err,
                            self.memory_rows, SPILL_RETRY)
            self._spill_retry_at = time.monotonic() + SPILL_RETRY
            return False
        self._write_at = at
        return True

    def _read_spilled(self, start: int, limit: int, end: int | None = None) -> tuple[list[MetricLog], int]:
        """Up to `limit` spilled rows from offset `start`, and the offset after the last one."""
        assert self._spill is not None
        rows: list[MetricLog] = []
        at = start
        end = self._write_at if end is None else end
        while len(rows) < limit and at < end:
            data = os.pread(self._spill.fileno(), min(_READ_SIZE, end - at), at)
            lines = data.split(b"\n")
            if len(lines) == 1:  # one row longer than a read: read on until its newline
                data = os.pread(self._spill.fileno(), end - at, at)
                lines = data.split(b"\n")
                if len(lines) == 1:  # never: only whole rows are below `end`; but never spin under the lock
                    raise OSError(f"the spill file holds a partial row at offset {at}")
            lines.pop()  # after the last newline: a partial row (read again next time) or nothing
            for line in lines[: limit - len(rows)]:
                rows.append(_row(line))
                at += len(line) + 1
        return rows, at

    # The reporter's side.

    @property
    def row_count(self) -> int:
        """Rows collected so far (reported or not), without the unavailable row."""
        return self._collected

    @property
    def unreported(self) -> int:
        """Rows collected and not taken by a reporter yet."""
        return self._collected - self._taken

    def wait_unreported(self, at_least: int, timeout: float, stop: threading.Event | None = None) -> int:
        """Block until `at_least` rows are unreported, `add` waits for room, `stop` is set (then `wake()`), or
        `timeout`."""
        with self._added:
            self._wanted = at_least
            try:
                self._added.wait_for(lambda: self.unreported >= at_least or self.stalled_since is not None
                                     or (stop is not None and stop.is_set()), timeout)
            finally:
                self._wanted = None
            return self.unreported

    def wake(self) -> None:
        """Make a `wait_unreported` look at its `stop` event now."""
        with self._added:
            self._added.notify_all()

    def take(self, limit: int) -> list[MetricLog]:
        """Remove and return the oldest `limit` unreported rows (the caller then owns their delivery)."""
        with self._lock:
            rows: list[MetricLog] = []
            if self._spilled_unread:
                rows, self._read_at = self._read_spilled(self._read_at, limit)
                self._spilled_unread -= len(rows)
            if len(rows) < limit and self._rows:
                more = limit - len(rows)
                rows += self._rows[:more]
                del self._rows[:more]
            self._taken += len(rows)
            if rows:
                if self.stalled_since is not None:
                    self.stalled_since = time.monotonic()
                self._room.notify_all()
            return rows

    def final_rows(self) -> list[MetricLog]:
        """Difference 4: the objective's `unavailable` row when it never appeared."""
        with self._lock:
            return [] if self._objective_seen else unavailable_rows(self.spec, ())

    def all_rows(self) -> Iterator[MetricLog]:
        """Everything still to report, in order: spilled rows, rows in memory, then the unavailable row.

        One consistent cut, taken when the walk starts: rows added meanwhile (a final read that overran
        the grace period) are neither walked nor able to make rows of the cut disappear. It takes nothing.
        """
        with self._lock:
            at, end, in_memory = self._read_at, self._write_at, list(self._rows)
            final = [] if self._objective_seen else unavailable_rows(self.spec, ())
            self.cut = self._collected
        while at < end:
            with self._lock:
                rows, at = self._read_spilled(at, _READ_SIZE // 64, end) if self._spill is not None else ([], end)
            yield from rows
        yield from in_memory
        yield from final

    def chunks(self, size: int) -> Iterator[list[MetricLog]]:
        """`all_rows()` in lists of at most `size` rows (never more than one list in memory)."""
        chunk: list[MetricLog] = []
        for row in self.all_rows():
            chunk.append(row)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def total_rows(self) -> int:
        """Rows collected in all, plus the unavailable row if there is one."""
        return self.row_count + len(self.final_rows())

    # CollectionStatus: what /metrics reads at scrape time.

    def lines_read(self) -> int:
        return 0 if self.events else self.stats.lines

    def events_read(self) -> int:
        return self.stats.lines if self.events else 0

    def values_skipped(self) -> Mapping[str, int]:
        return {str(reason): count for reason, count in dict(self.stats.skipped).items()}

    def metric_summaries(self) -> Sequence[MetricSummary]:
        with self._lock:
            return self._reducer.summaries()

    def summaries(self) -> list[MetricSummary]:
        return list(self.metric_summaries())

    def close(self) -> None:
        with self._lock:
            if self._spill is not None:
                self._spill.close()
                self._spill = None
