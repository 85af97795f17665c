"""Follow a metrics file as it is written: blocks of whole lines, across rewrites, truncation and rotation.

`FileTail` is the file state machine (mtail's LineReader, `tail -F`): it reads at most `max_read`
bytes per call and hands over the whole lines among them as one block of bytes (the parser searches
whole blocks at C speed), keeps an unterminated last line until its newline arrives (handed over at
the true end, or when its file ends: rotation, truncation, rewrite), and drains the old file before
following a new one at the same path (rename rotation, replacement). Before reading on, it checks
that the file still holds what it read (a CRC-32 of everything read, its first bytes and the bytes
before the read position): a file rewritten in place, or truncated and written again, is read again
from its start, and `collector.sources.handed` leaves out the lines already handed over at the same
offsets. `flush()` checks the whole file once more. `WatchedTail` adds the wait: a directory watch, so
a file that does not exist yet is waited for without busy-looping, and a file written continuously
costs no wake-up per write (`collector.sources.watch.watch_directory`).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from stat import S_ISDIR, S_ISFIFO, S_ISREG
from typing import BinaryIO

from katib_metrics.collector.sources.handed import MAX_RECORDS, Handed, record_new
from katib_metrics.collector.sources.watch import watch_directory

__all__ = ["FileTail", "WatchedTail"]

MAX_READ = 1 << 18
"""A backlog (the sidecar was starved of CPU, or started late) is read in blocks of this size: parsing a
block briefly holds about 12 bytes per byte of it (rows, columns, matches), so 256 KiB keeps that near
3 MiB, where 1 MiB blocks added 12 MiB to the peak RSS; the block stays large enough for C-speed parsing."""
MAX_LINE = 1 << 20
FULL_CHECK = 1 << 16
"""Up to this many bytes read, every read compares the whole of them with the file (one pread and a CRC,
some microseconds): any change of a small file, the usual one rewritten every epoch, is seen at once."""
WINDOW = 1 << 12
"""Beyond `FULL_CHECK`, every read compares the first and the last `WINDOW` bytes read (and the partial last
line) with the file; a change elsewhere is seen by the whole-file check of `flush()`."""


class FileTail:
    """Reads new whole lines of `path`; never blocks, never holds more than one read plus one line."""

    def __init__(self, path: Path, *, max_read: int = MAX_READ, max_line: int = MAX_LINE,
                 full_check: int = FULL_CHECK, window: int = WINDOW, max_records: int = MAX_RECORDS) -> None:
        self.path = path
        self.max_read = max_read
        self.max_line = max_line
        self.full_check = full_check
        self.window = window
        self._file: BinaryIO | None = None
        self._regular = True
        self._identity: tuple[int, int] | None = None
        self._pos = 0
        self._carry = b""
        self._in_pieces = False  # part of the current line was handed over without its newline (see parsers.longline)
        self._at_end = False  # the last read reached the end of the file: the carry is its unterminated last line
        self._final = False  # flush() was called: the end of the file ends its last line
        self._crc = 0  # CRC-32 of the bytes [0, _pos) read from this file
        self._head = b""  # its first `window` bytes
        self._recent = b""  # the `window` bytes before the carry
        self._handed = Handed(max_records)  # the lines handed over from this file as it is now
        self._base = Handed(max_records)  # the last line handed over at each offset before it changed
        self.rotations = 0
        self.truncations = 0
        self.rewrites = 0
        self.repeats = 0  # lines left out after a change: handed over already at the same offset
        self.bytes_read = 0

    def _open(self) -> bool:
        try:  # non-blocking: opening a FIFO no one writes yet, or reading one its writer keeps silent, never waits
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        stat = os.fstat(fd)
        if not (S_ISREG(stat.st_mode) or S_ISFIFO(stat.st_mode)):
            os.close(fd)  # a device (a symlink to /dev/zero) never ends: the final read would never finish
            kind = "a directory" if S_ISDIR(stat.st_mode) else "a device or socket"
            raise OSError(f"{self.path} is {kind}, not a regular file or FIFO")
        handle = open(fd, "rb", buffering=0)  # noqa: SIM115 - kept open across calls
        self._file, self._identity = handle, (stat.st_dev, stat.st_ino)
        self._regular = S_ISREG(stat.st_mode)  # a FIFO has no size to go by
        self._start_over()
        return True

    def _start_over(self) -> None:
        self._pos, self._crc, self._head, self._recent, self._at_end = 0, 0, b"", b"", False

    def _consume(self, data: bytes) -> bytes:
        start = self._pos
        self._pos += len(data)
        self.bytes_read += len(data)
        if self._regular:
            self._crc = zlib.crc32(data, self._crc)
        if len(self._head) < self.window:
            self._head += data[: self.window - len(self._head)]
        return self._whole_lines(data, start)

    def _whole_lines(self, data: bytes, start: int) -> bytes:
        """The whole lines of carry + `data` (read at offset `start`); the rest is carried until its newline."""
        line_start = start - len(self._carry)
        continued = self._in_pieces
        cut = data.rfind(b"\n")
        if cut < 0:
            self._carry += data
            block = b""
        else:
            block = self._carry + data[: cut + 1] if self._carry else data[: cut + 1]
            self._carry, self._in_pieces = data[cut + 1 :], False
            self._note(block)
            block = self._hand(block, line_start, continued)
        if len(self._carry) > self.max_line:  # a runaway line goes on in pieces (no newline): never held whole
            self._note(self._carry)
            block += self._carry
            self._carry, self._in_pieces = b"", True
        return block

    def _note(self, consumed: bytes) -> None:
        """Keep the last `window` bytes before the carry, for the check of the next read."""
        self._recent = consumed[-self.window :] if len(consumed) >= self.window else \
            (self._recent + consumed)[-self.window :]

    def _hand(self, block: bytes, start: int, continued: bool) -> bytes:
        """Record the lines of `block` and leave out those handed over already at the same offset."""
        if continued:  # the first line's head went in pieces: neither recorded nor left out
            first = block.index(b"\n") + 1
            return block[:first] + self._hand(block[first:], start + first, False)
        if not block:
            return block
        kept, repeats = record_new(self._handed, self._base, block, start)
        self.repeats += repeats
        return bytes(kept)

    def _end_line(self) -> bytes | None:
        """The file ended (rotation, truncation, rewrite, true end): its unterminated last line, without a
        newline; None when there is none. A partial line not read to the end of its file is dropped."""
        carry, self._carry = self._carry, b""
        pieces, self._in_pieces = self._in_pieces, False
        self._note(carry)  # still read: the next check compares it where it stands
        if pieces:  # the line's head is out already: end it, whatever is left
            return carry if self._at_end else b""
        if not carry or not self._at_end:
            return None
        start = self._pos - len(carry)
        self._handed.add_line(carry, start)
        if self._base.holds(carry, start):
            self.repeats += 1
            return None
        return carry

    def _changed(self, kind: str) -> bytes | None:
        """The file is no longer what was read: end its last line and read it again from the start."""
        line = self._end_line()
        self._base = self._handed.over(self._base, self._pos)
        self._handed = Handed(self._base.limit)
        if kind == "rotation":
            self._close_file()
            self.rotations += 1
        else:
            assert self._file is not None
            self._file.seek(0)
            self._start_over()
            if kind == "truncation":
                self.truncations += 1
            else:
                self.rewrites += 1
        return line

    def _check(self, whole: bool = False) -> str | None:
        """How the open file changed from what was read: "truncation", "rewrite" or None (only grew)."""
        if self._file is None or not self._regular or self._pos == 0:
            return None
        fd = self._file.fileno()
        if os.fstat(fd).st_size < self._pos:
            return "truncation"
        if whole or self._pos <= self.full_check:
            same = self._crc_of_file(fd) == self._crc
        else:
            end = self._recent + self._carry
            same = (os.pread(fd, len(self._head), 0) == self._head
                    and os.pread(fd, len(end), self._pos - len(end)) == end)
        return None if same else "rewrite"

    def _crc_of_file(self, fd: int) -> int | None:
        """CRC-32 of the file's bytes [0, _pos), None if it is shorter now."""
        crc, at = 0, 0
        while at < self._pos:
            data = os.pread(fd, min(self.max_read, self._pos - at), at)
            if not data:
                return None
            crc, at = zlib.crc32(data, crc), at + len(data)
        return crc

    def read(self) -> bytes:
        """New whole lines (about `max_read` bytes of them); empty only when no new line is complete."""
        checked = False
        while True:
            if self._file is None and not self._open():
                return self._last_line()
            assert self._file is not None
            if not checked:
                checked = True
                if (kind := self._check()) is not None and (line := self._changed(kind)) is not None:
                    return line + b"\n"
            # Ask for what is there, not `max_read`: a 1 MiB read buffer per call is an mmap and page
            # faults each time, which costs more than the fstat when small writes come often.
            available = os.fstat(self._file.fileno()).st_size - self._pos if self._regular else self.max_read
            data = (self._file.read(min(available, self.max_read)) or b"") if available > 0 else b""  # None: a
            # FIFO with nothing to read now
            self._at_end = len(data) >= available if self._regular else len(data) < self.max_read
            if data:
                if block := self._consume(data):
                    return block
                continue
            changed, block = self._at_eof()
            if block or not changed:
                return block or self._last_line()

    def _at_eof(self) -> tuple[bool, bytes]:
        """At the end of what we hold: was the path truncated or replaced meanwhile?"""
        try:
            stat = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False, b""  # moved away, not recreated yet: the old file is drained, wait for the new one
        if (stat.st_dev, stat.st_ino) != self._identity:
            kind = "rotation"  # the loop goes on with the new file from its start
        elif self._regular and stat.st_size < self._pos:
            kind = "truncation"
        else:
            return False, b""
        line = self._changed(kind)
        return True, b"" if line is None else line + b"\n"

    def _last_line(self) -> bytes:
        """After `flush()`, the end of the file ends its last line (it was read again after a change)."""
        if not self._final:
            return b""
        line = self._end_line()
        return b"" if line is None else line + b"\n"

    def flush(self) -> bytes:
        """At true end, after `read()` came back empty: the unterminated last line, if any.

        First the whole file is checked once more: if it no longer holds what was read (a change that
        kept the bytes the reads compare), it is read again from its start, and the caller drains
        `read()` once more (`Pipeline` does), lines already handed over left out.
        """
        self._final, self._at_end = True, True
        kind = self._check(whole=True)
        line = self._changed(kind) if kind is not None else self._end_line()
        return line or b""

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
