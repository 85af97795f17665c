"""A live TensorFlow event directory: helper `parsers.tfevent.EventDirReader` plus a recursive watch.

The reader keeps one offset per event file and treats an incomplete last record as "not written
yet"; this source adds the waiting (inotify on the whole tree, polling where that is impossible) and
hands the rows over one file chunk at a time, so memory stays bounded on huge event files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from katib_metrics.collector.sources.watch import DirWatcher
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.stats import ParseStats, SkipSink
from katib_metrics.parsers.tfevent import EventDirReader

__all__ = ["EventDirSource"]


class EventDirSource:
    """A `LogSource` over an event directory that may not exist yet."""

    def __init__(self, path: Path, spec: CollectorSpec, *, stats: ParseStats | None = None,
                 on_skip: SkipSink | None = None, poll_interval: float = 0.5,
                 force_polling: bool = False) -> None:
        self.reader = EventDirReader(path, spec, stats, on_skip)
        self.watcher = DirWatcher(path, recursive=True, poll_interval=poll_interval,
                                  force_polling=force_polling)
        self._batches: Iterator[Sequence[MetricLog]] | None = None

    def read(self) -> Sequence[MetricLog]:
        """The next rows; empty only when every event file has been read as far as it is complete."""
        if self._batches is None:
            self._batches = self.reader.iter_batches()
        for batch in self._batches:
            if batch:
                return batch
        self._batches = None
        return []

    def flush(self) -> list[MetricLog]:
        """At true end: whatever is still unread; an incomplete last record is then counted as bad."""
        rows: list[MetricLog] = []
        while batch := self.read():
            rows.extend(batch)
        self.reader.report_incomplete_tails()
        return rows

    def wait(self, timeout: float) -> None:
        self.watcher.wait(timeout)

    def wake(self) -> None:
        self.watcher.wake()

    def close(self) -> None:
        self.watcher.close()
