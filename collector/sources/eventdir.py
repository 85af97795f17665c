"""A live TensorFlow event directory: helper `parsers.tfevent.EventDirReader` plus a recursive watch.

The reader keeps one offset per event file and treats an incomplete last record as "not written
yet"; this source adds the waiting (inotify on the whole tree, polling where that is impossible) and
hands the rows over one file chunk at a time, so memory stays bounded on huge event files. A file
deleted and written again under the same name (a new inode whose first bytes differ) is read from its
start; a file replaced by a longer copy of itself (a sync tool's rename) is read on where it was.
"""

from __future__ import annotations

import os
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
        self._seen: dict[str, tuple[tuple[int, int, int], bytes]] = {}  # relpath: (dev, inode, size), first bytes
        self._noted: dict[str, int] = {}  # relpath: the reader's offset in it when `_seen` was noted

    def read(self) -> Sequence[MetricLog]:
        """The next rows; empty only when every event file has been read as far as it is complete."""
        if self._batches is None:
            self._forget_replaced()
            self._batches = self.reader.iter_batches()
        for batch in self._batches:
            if batch:
                return batch
        self._batches = None
        self._note_files()
        return []

    def _forget_replaced(self) -> None:
        """Files read before that are now other files: the reader reads them again from their start.

        A file that changed since the last pass (its inode is no proof: a new file often gets the inode of
        the one just deleted) has its first bytes compared with those read: one small read per changed file."""
        for relpath, seen in list(self._seen.items()):
            path = os.path.join(self.reader.root, relpath)
            try:
                stat = os.stat(path)
            except OSError:
                continue  # gone: the reader skips it until a file appears at the path again
            if (stat.st_dev, stat.st_ino, stat.st_size) == seen[0]:
                continue
            head = _head(path, len(seen[1]))
            if head is None or head[1] == seen[1]:  # grown, or a longer copy of what was read: read on
                continue
            self.reader.forget(relpath)
            del self._seen[relpath]
            self._noted.pop(relpath, None)

    def _note_files(self) -> None:
        """After a pass: the file each path was read from, by identity, size and first bytes."""
        for relpath, offset in self.reader.offsets().items():
            if self._noted.get(relpath) == offset:
                continue  # not read on in this pass: nothing new to note
            head = _head(os.path.join(self.reader.root, relpath), min(offset, HEAD))
            if head is not None:
                self._seen[relpath] = head
                self._noted[relpath] = offset

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


HEAD = 64
"""Compared bytes of a file's start: its first record holds the writer's start time to the microsecond."""


def _head(path: str, size: int) -> tuple[tuple[int, int, int], bytes] | None:
    """(device, inode, size) and the first `size` bytes of `path`; None when it cannot be read."""
    try:
        with open(path, "rb") as file:
            stat = os.fstat(file.fileno())
            return (stat.st_dev, stat.st_ino, stat.st_size), file.read(size)
    except OSError:
        return None
