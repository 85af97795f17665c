"""Wake-ups for sources: inotify through `watchdog` on a directory, polling where watching is impossible.

A source never busy-loops: it sleeps on a `threading.Event` that the watch sets on any change in the
directory (or that `wake()` sets when the pipeline stops). Where no watch can be placed (the directory
does not exist yet, inotify limits, `force_polling`) the sleep is bounded by the poll interval instead,
and a watch is tried again on the next wait.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

__all__ = ["DirWatcher"]

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
