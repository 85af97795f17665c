"""Follow a metrics file as it is written: complete lines in bounded batches, across truncation and rotation.

`FileTail` is the file state machine (mtail's LineReader, `tail -F`): it reads at most `max_read`
bytes per call, keeps an unterminated last line until its newline arrives (flushed only at true end),
starts over when the file shrinks (truncation, `copytruncate`), and drains the old file before
following a new one at the same path (rename rotation, replacement). `WatchedTail` adds the wait: a
directory watch, so a file that does not exist yet is waited for without busy-looping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from collector.sources.base import LineBatch
from collector.sources.watch import DirWatcher
from parsers.lines import decode_line

__all__ = ["FileTail", "WatchedTail"]

MAX_READ = 1 << 20
MAX_LINE = 1 << 20


class FileTail:
    """Reads new complete lines of `path`; never blocks, never holds more than one read plus one line."""

    def __init__(self, path: Path, *, max_read: int = MAX_READ, max_line: int = MAX_LINE) -> None:
        self.path = path
        self.max_read = max_read
        self.max_line = max_line
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._pos = 0
        self._carry = b""
        self._next_lineno = 1
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
        return True

    def _batch(self, pieces: list[bytes]) -> LineBatch:
        batch = LineBatch(self._next_lineno, [decode_line(piece) for piece in pieces])
        self._next_lineno += len(pieces)
        return batch

    def _split(self, data: bytes) -> list[bytes]:
        pieces = (self._carry + data).split(b"\n") if self._carry else data.split(b"\n")
        self._carry = pieces.pop()
        if len(self._carry) > self.max_line:  # a runaway line is cut, never dropped nor kept whole
            pieces.append(self._carry)
            self._carry = b""
        return pieces

    def _take_carry(self) -> list[bytes]:
        carry, self._carry = self._carry, b""
        return [carry] if carry else []

    def read(self) -> LineBatch:
        """New complete lines (about `max_read` bytes of them); empty only when nothing new is complete."""
        pieces: list[bytes] = []
        while not pieces:
            if self._file is None and not self._open():
                break
            assert self._file is not None
            data = self._file.read(self.max_read)
            if data:
                self._pos += len(data)
                self.bytes_read += len(data)
                pieces = self._split(data)
                continue
            changed, pieces = self._at_eof()
            if not changed:
                break
        return self._batch(pieces)

    def _at_eof(self) -> tuple[bool, list[bytes]]:
        """At the end of what we hold: was the path truncated or replaced meanwhile?"""
        try:
            stat = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False, []  # moved away, not recreated yet: the old file is drained, wait for the new one
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
        return False, []

    def flush(self) -> LineBatch:
        """At true end, after `read()` came back empty: the unterminated last line, if any."""
        return self._batch(self._take_carry())

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._identity, self._pos = None, None, 0

    def close(self) -> None:
        self._close_file()


class WatchedTail:
    """A `FileTail` that can wait for news about its file (a `LineSource`)."""

    def __init__(self, path: Path, *, poll_interval: float = 0.5, force_polling: bool = False,
                 max_read: int = MAX_READ) -> None:
        self.tail = FileTail(path, max_read=max_read)
        self.watcher = DirWatcher(path.parent, poll_interval=poll_interval, force_polling=force_polling)

    def read(self) -> LineBatch:
        return self.tail.read()

    def flush(self) -> LineBatch:
        return self.tail.flush()

    def wait(self, timeout: float) -> None:
        self.watcher.wait(timeout)

    def wake(self) -> None:
        self.watcher.wake()

    def close(self) -> None:
        self.watcher.close()
        self.tail.close()
