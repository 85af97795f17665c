"""The store: every MetricLog still to report, in arrival order, and the running min/max/latest per metric.

The pipeline writes, reporters read: `take()` hands the oldest unreported rows to the incremental
reporter (`collector.shipper`), `chunks()` gives what is left at the end (plus difference 4's
unavailable row), and the `CollectionStatus` methods feed `/metrics`. Memory stays bounded however
long the log: beyond `memory_rows` rows the store spills them to an unlinked temporary file (in the
metrics volume by default: the sidecar's root filesystem is read-only) and reads them back in order,
from a cursor, when reporting. Nothing is dropped: if no spill file can be created, rows stay in
memory and a warning says so.

Invariant: the unreported rows are the spill file from `_read_at` to its end, then `_rows`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
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
        self._spill_failed = False
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
            except OSError as err:
                log.warning("cannot spill rows to %s (%s)", directory or tempfile.gettempdir(), err)
        return None

    def _spill_rows(self) -> None:
        """Under the lock: move the rows in memory to the end of the spill file."""
        if self._spill is None and not self._spill_failed:
            self._spill = self._open_spill()
            if self._spill is None:
                self._spill_failed = True
                log.warning("keeping every row in memory: no writable directory for the spill file "
                            "(give the sidecar --spill-dir)")
        if self._spill is None:
            return
        data = "".join(_spill_line(row) for row in self._rows).encode("utf-8")
        view = memoryview(data)
        while view:  # a short write (a full disk raises instead) is continued, never lost
            written = os.pwrite(self._spill.fileno(), view, self._write_at)
            self._write_at += written
            view = view[written:]
        self._spilled_unread += len(self._rows)
        self._rows = []

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
        """Block until `at_least` rows are unreported, `stop` is set (then `wake()`), or `timeout`."""
        with self._added:
            self._wanted = at_least
            try:
                self._added.wait_for(lambda: self.unreported >= at_least or (stop is not None and stop.is_set()),
                                     timeout)
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
