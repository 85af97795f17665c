"""Wake-ups for sources: inotify through `watchdog` on a directory, polling where watching is impossible.

A source never busy-loops: it sleeps until the watch reports any change in the directory (or until
`wake()` when the pipeline stops). Where no watch can be placed (the directory does not exist yet,
inotify limits, `force_polling`) the sleep is bounded by the poll interval instead, and a watch is
tried again on the next wait. `watch_directory` picks the watch: on Linux, one inotify descriptor
read only before a sleep (`collector.sources.inotify`: events of a busy file cost nothing), else
`DirWatcher`, watchdog's `Observer` (its threads also serve recursive watches).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from katib_metrics.collector.sources.inotify import InotifyWatcher, inotify_available

__all__ = ["DirWatcher", "Watcher", "watch_directory"]

log = logging.getLogger(__name__)


class _Setter(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._event.set()


class DirWatcher:
    """Sleeps until `directory` changes; `watching` says whether inotify or polling decides."""

    def __init__(self, directory: Path, *, recursive: bool = False, poll_interval: float = 0.5,
                 force_polling: bool = False) -> None:
        self.directory = directory
        self.recursive = recursive
        self.poll_interval = poll_interval
        self.force_polling = force_polling
        self._event = threading.Event()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._closed = False

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def _start(self) -> None:
        if self.force_polling or self._closed or not self.directory.is_dir():
            return
        observer = Observer()
        try:
            observer.schedule(_Setter(self._event), str(self.directory), recursive=self.recursive)
            observer.start()
        except OSError as err:  # inotify instance/watch limits: polling still works
            log.warning("cannot watch %s (%s); polling every %gs instead", self.directory, err,
                        self.poll_interval)
            self.force_polling = True
            return
        self._observer = observer

    def wait(self, timeout: float) -> None:
        if self._observer is None:
            self._start()
        limit = timeout if self._observer is not None else min(timeout, self.poll_interval)
        self._event.wait(max(limit, 0.0))
        self._event.clear()

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._closed = True
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        self._event.set()


class Watcher(Protocol):
    """What a source sleeps on; `watching` says whether a change (rather than the poll interval) ends a wait."""

    @property
    def watching(self) -> bool: ...

    def wait(self, timeout: float) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


def watch_directory(directory: Path, *, poll_interval: float = 0.5, force_polling: bool = False) -> Watcher:
    """A non-recursive watch on `directory`: lazily read inotify on Linux, watchdog's Observer elsewhere."""
    if not force_polling and inotify_available():
        try:
            return InotifyWatcher(directory, poll_interval=poll_interval)
        except OSError as err:  # the per-user inotify instance limit: polling still works
            log.warning("cannot watch %s (%s); polling every %gs instead", directory, err, poll_interval)
            force_polling = True
    return DirWatcher(directory, poll_interval=poll_interval, force_polling=force_polling)
