"""The store: every MetricLog to report, in arrival order, and the running min/max/latest per metric.

The pipeline writes, reporters read (`chunks()` for the db-manager, the `CollectionStatus` methods
for `/metrics`). Memory stays bounded however long the log: beyond `memory_rows` rows the store
spills them to an unlinked temporary file (in the metrics volume by default: the sidecar's root
filesystem is read-only) and reads them back in order when reporting. Nothing is dropped: if no spill
file can be created, rows stay in memory and a warning says so.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from parsers.model import CollectorSpec, MetricLog, MetricSummary
from parsers.observation import unavailable_rows
from parsers.stats import ParseStats
from parsers.strategies import Reducer

__all__ = ["MetricStore"]

log = logging.getLogger(__name__)

MEMORY_ROWS = 5000


def _spill_line(row: MetricLog) -> str:
    """`\tTIME\tNAME\tVALUE` (fast), or a JSON array when a field holds a tab or a line break."""
    line = f"\t{row.time_stamp}\t{row.name}\t{row.value}\n"
    if line.count("\t") == 3 and line.count("\n") == 1 and "\r" not in line:
        return line
    return json.dumps([row.time_stamp, row.name, row.value]) + "\n"


class MetricStore:
    """Rows to report plus their running summary; thread-safe (one writer, many readers)."""

    def __init__(self, spec: CollectorSpec, *, stats: ParseStats | None = None, events: bool = False,
                 memory_rows: int = MEMORY_ROWS, spill_dir: Path | None = None) -> None:
        self.spec = spec
        self.stats = stats if stats is not None else ParseStats()
        self.events = events  # the stats count TensorFlow events, not lines
        self.memory_rows = memory_rows
        self.spill_dir = spill_dir
        self._lock = threading.Lock()
        self._reducer = Reducer(spec)
        self._rows: list[MetricLog] = []
        self._seen: set[str] = set()
        self._spill: TextIO | None = None
        self._spilled = 0
        self._spill_failed = False

    def add(self, logs: Sequence[MetricLog]) -> None:
        if not logs:
            return
        with self._lock:
            self._rows.extend(logs)
            self._reducer.add_all(logs)
            self._seen.update(row.name for row in logs)
        if len(self._rows) >= self.memory_rows:
            self._spill_rows()

    def _open_spill(self) -> TextIO | None:
        for directory in (self.spill_dir, None):
            if directory is not None and not directory.is_dir():
                continue
            try:
                return tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory, prefix=".katib-rows-")
            except OSError as err:
                log.warning("cannot spill rows to %s (%s)", directory or tempfile.gettempdir(), err)
        return None

    def _spill_rows(self) -> None:
        if self._spill is None and not self._spill_failed:
            self._spill = self._open_spill()
            if self._spill is None:
                self._spill_failed = True
                log.warning("keeping every row in memory: no writable directory for the spill file "
                            "(give the sidecar --spill-dir)")
        if self._spill is None:
            return
        with self._lock:
            rows, self._rows = self._rows, []
            self._spill.writelines(_spill_line(row) for row in rows)
            self._spilled += len(rows)

    @property
    def row_count(self) -> int:
        """Rows collected so far, without the unavailable row."""
        return self._spilled + len(self._rows)

    def final_rows(self) -> list[MetricLog]:
        """Difference 4: the objective's `unavailable` row when it never appeared."""
        with self._lock:
            return unavailable_rows(self.spec, self._seen)

    def _spilled_rows(self) -> Iterator[MetricLog]:
        if self._spill is None:
            return
        self._spill.flush()
        self._spill.seek(0)
        for line in self._spill:
            if line[0] == "\t":
                time_stamp, name, value = line[1:-1].split("\t")
            else:
                time_stamp, name, value = json.loads(line)
            yield MetricLog(time_stamp, name, value)
        self._spill.seek(0, 2)

    def all_rows(self) -> Iterator[MetricLog]:
        """Everything to report, in order: spilled rows, rows in memory, then the unavailable row."""
        yield from self._spilled_rows()
        yield from list(self._rows)
        yield from self.final_rows()

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
        if self._spill is not None:
            self._spill.close()
            self._spill = None

