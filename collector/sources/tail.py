"""Follow a metrics file as it is written: blocks of whole lines, across truncation and rotation.

`FileTail` is the file state machine (mtail's LineReader, `tail -F`): it reads at most `max_read`
bytes per call and hands over the whole lines among them as one block of bytes (the parser searches
whole blocks at C speed), keeps an unterminated last line until its newline arrives (flushed only at
true end), starts over when the file shrinks (truncation, `copytruncate`), and drains the old file
before following a new one at the same path (rename rotation, replacement). `WatchedTail` adds the
wait: a directory watch, so a file that does not exist yet is waited for without busy-looping, and a
file written continuously costs no wake-up per write (`collector.sources.watch.watch_directory`).
"""

from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from katib_metrics.collector.sources.watch import watch_directory

__all__ = ["FileTail", "WatchedTail"]

MAX_READ = 1 << 18
"""A backlog (the sidecar was starved of CPU, or started late) is read in blocks of this size: parsing a
block briefly holds about 12 bytes per byte of it (rows, columns, matches), so 256 KiB keeps that near
3 MiB, where 1 MiB blocks added 12 MiB to the peak RSS; the block stays large enough for C-speed parsing."""
MAX_LINE = 1 << 20


class FileTail:
    """Reads new whole lines of `path`; never blocks, never holds more than one read plus one line."""

    def __init__(self, path: Path, *, max_read: int = MAX_READ, max_line: int = MAX_LINE) -> None:
        self.path = path
        self.max_read = max_read
        self.max_line = max_line
        self._file: BinaryIO | None = None
        self._regular = True
        self._identity: tuple[int, int] | None = None
        self._pos = 0
        self._carry = b""
        self.rotations = 0
        self.truncations = 0
        self.bytes_read = 0

    def _open(self) -> bool:
        try:
            handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open across calls
        except (FileNotFoundError, NotADirectoryError):
            return False
        stat = os.fstat(handle.fileno())
        self._file, self._identity, self._pos = handle, (stat.st_dev, stat.st_ino), 0
        self._regular = S_ISREG(stat.st_mode)  # a FIFO or device has no size to go by
        return True

    def _whole_lines(self, data: bytes) -> bytes:
        """The whole lines of carry + `data`; the rest is carried until its newline arrives."""
        cut = data.rfind(b"\n")
        if cut < 0:
            self._carry += data
            block = b""
        else:
            block = self._carry + data[: cut + 1] if self._carry else data[: cut + 1]
            self._carry = data[cut + 1 :]
        if len(self._carry) > self.max_line:  # a runaway line is cut, never dropped nor kept whole
            block += self._take_carry()
        return block

    def _take_carry(self) -> bytes:
        """The carried partial line as a whole one: its file ended (rotation, truncation) or it ran away."""
        carry, self._carry = self._carry, b""
        return carry + b"\n" if carry else b""

    def read(self) -> bytes:
        """New whole lines (about `max_read` bytes of them); empty only when no new line is complete."""
        while True:
            if self._file is None and not self._open():
                return b""
            assert self._file is not None
            # Ask for what is there, not `max_read`: a 1 MiB read buffer per call is an mmap and page
            # faults each time, which costs more than the fstat when small writes come often.
            available = os.fstat(self._file.fileno()).st_size - self._pos if self._regular else self.max_read
            data = self._file.read(min(available, self.max_read)) if available > 0 else b""
            if data:
                self._pos += len(data)
                self.bytes_read += len(data)
                if block := self._whole_lines(data):
                    return block
                continue
            changed, block = self._at_eof()
            if block or not changed:
                return block

    def _at_eof(self) -> tuple[bool, bytes]:
        """At the end of what we hold: was the path truncated or replaced meanwhile?"""
        try:
            stat = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False, b""  # moved away, not recreated yet: the old file is drained, wait for the new one
        if (stat.st_dev, stat.st_ino) != self._identity:
            self._close_file()
            self.rotations += 1
            return True, self._take_carry()  # the loop goes on with the new file from its start
        if stat.st_size < self._pos:
            assert self._file is not None
            self._file.seek(0)
            self._pos = 0
            self.truncations += 1
            return True, self._take_carry()
        return False, b""

    def flush(self) -> bytes:
        """At true end, after `read()` came back empty: the unterminated last line, if any."""
        carry, self._carry = self._carry, b""
        return carry

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._identity, self._pos = None, None, 0

    def close(self) -> None:
        self._close_file()


class WatchedTail:
    """A `FileTail` that can wait for news about its file (a `BlockSource`)."""

    def __init__(self, path: Path, *, poll_interval: float = 0.5, force_polling: bool = False,
                 max_read: int = MAX_READ) -> None:
        self.tail = FileTail(path, max_read=max_read)
        self.watcher = watch_directory(path.parent, poll_interval=poll_interval, force_polling=force_polling)

    def read(self) -> bytes:
        return self.tail.read()

    def flush(self) -> bytes:
        return self.tail.flush()

    def wait(self, timeout: float) -> None:
        self.watcher.wait(timeout)

    def wake(self) -> None:
        self.watcher.wake()

    def close(self) -> None:
        self.watcher.close()
        self.tail.close()
