"""Wake-ups for a file tail on Linux: one inotify descriptor, read only when the tail has caught up.

Why not watchdog's `Observer` for a tail: its threads read and dispatch every event the moment it
happens, and a training flushing its log every few milliseconds makes hundreds of events a second,
each handled in Python by three threads (measured: 6 % of a core at 10,000 lines/s). The kernel
merges an event with the last one still unread in the queue when they are identical, so a
descriptor that is left alone while the file is being read, and drained only before a sleep, costs
one `read(2)` per sleep whatever the write rate. The bindings are watchdog's own (`inotify_c`); the
events are never decoded beyond "the watch itself is gone".
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import sys
from pathlib import Path

from watchdog.utils import UnsupportedLibcError

__all__ = ["InotifyWatcher", "inotify_available"]

_AVAILABLE = False
if sys.platform.startswith("linux"):  # elsewhere watchdog's bindings cannot even be imported
    try:
        from watchdog.observers.inotify_c import InotifyConstants, inotify_add_watch, inotify_init
    except (ImportError, OSError, AttributeError, UnsupportedLibcError):  # a libc without inotify
        pass
    else:
        _AVAILABLE = True

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name
_IN_IGNORED = 0x00008000  # the watch was removed (the directory was deleted or its file system unmounted)
_BUFFER = 64 * 1024


def inotify_available() -> bool:
    return _AVAILABLE


def _mask() -> int:
    c = InotifyConstants
    return int(c.IN_MODIFY | c.IN_CLOSE_WRITE | c.IN_CREATE | c.IN_DELETE | c.IN_MOVED_FROM | c.IN_MOVED_TO
               | c.IN_ATTRIB | c.IN_DELETE_SELF | c.IN_MOVE_SELF)


class InotifyWatcher:
    """Sleeps until `directory` changes (a non-recursive watch); polls while the directory is missing.

    Raises `OSError` when no inotify instance can be created (the per-user limit): use polling then.
    """

    def __init__(self, directory: Path, *, poll_interval: float = 0.5) -> None:
        if not _AVAILABLE:
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        fd = inotify_init()
        if fd < 0:
            raise OSError(_errno(), f"cannot create an inotify instance for {directory}")
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)  # the training command must not inherit it
        self.directory = directory
        self.poll_interval = poll_interval
        self._fd = fd
        self._wd: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False

    @property
    def watching(self) -> bool:
        return self._wd is not None

    def _watch(self) -> None:
        if self._wd is not None or self._closed:
            return
        wd = inotify_add_watch(self._fd, os.fsencode(self.directory), _mask())
        if wd >= 0:  # else: missing (ENOENT) or not permitted yet; polled, and tried again next time
            self._wd = wd

    def wait(self, timeout: float) -> None:
        """Block until the directory changed since the last wait, `wake()`, or `timeout` seconds."""
        if self._closed:
            return
        self._watch()
        limit = timeout if self._wd is not None else min(timeout, self.poll_interval)
        try:
            ready, _, _ = select.select([self._fd, self._wake_r], [], [], max(limit, 0.0))
        except (OSError, ValueError):  # closed by another thread meanwhile
            return
        if self._fd in ready:
            self._drain_events()
        if self._wake_r in ready:
            _drain(self._wake_r)

    def _drain_events(self) -> None:
        while data := _read(self._fd):
            at = 0
            while at + _HEADER.size <= len(data):
                wd, mask, _, size = _HEADER.unpack_from(data, at)
                if mask & _IN_IGNORED and wd == self._wd:
                    self._wd = None  # the directory went away: poll, and watch it again once it is back
                at += _HEADER.size + size

    def wake(self) -> None:
        """Safe from any thread."""
        with contextlib.suppress(OSError):  # a full pipe: a wake-up is pending anyway; closed: nobody waits
            os.write(self._wake_w, b"!")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.wake()
        for fd in (self._fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _BUFFER)
    except BlockingIOError:
        return b""
    except OSError:  # closed meanwhile
        return b""


def _drain(fd: int) -> None:
    while _read(fd):
        pass


def _errno() -> int:
    return ctypes.get_errno() or errno.EMFILE
