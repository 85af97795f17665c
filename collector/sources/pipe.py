"""A running command's output as a line source: shown live (tee) and parsed, stdout and stderr both.

One reader thread per pipe copies the bytes to our own stream as they come (progress bars and
partial lines included), splits them into lines and queues them for the pipeline. The queue is
bounded: a pipeline that falls behind slows the command down (as `tee` would), it never drops lines.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import IO

from collector.sources.base import LineBatch
from parsers.lines import decode_line

__all__ = ["ProcessOutput"]

READ_SIZE = 1 << 16
MAX_QUEUED = 20_000
MAX_BATCH = 5_000


class ProcessOutput:
    """A `LineSource` over pipes; `read()` after the command ended and `done` is true returns the rest."""

    def __init__(self, streams: list[tuple[IO[bytes], IO[bytes] | None]], *, max_queued: int = MAX_QUEUED) -> None:
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._max_queued = max_queued
        self._next_lineno = 1
        self._woken = False
        self._threads = [threading.Thread(target=self._pump, args=(pipe, tee), daemon=True, name="tee")
                         for pipe, tee in streams]
        for thread in self._threads:
            thread.start()

    @property
    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def _pump(self, pipe: IO[bytes], tee: IO[bytes] | None) -> None:
        carry = b""
        fd = pipe.fileno()
        while data := os.read(fd, READ_SIZE):
            if tee is not None:
                tee.write(data)
                tee.flush()
            pieces = (carry + data).split(b"\n")
            carry = pieces.pop()
            self._put([decode_line(piece) for piece in pieces])
        self._put([decode_line(carry)] if carry else [])
        pipe.close()
        with self._cond:
            self._cond.notify_all()

    def _put(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._cond:
            self._cond.wait_for(lambda: len(self._queue) < self._max_queued)
            self._queue.extend(lines)
            self._cond.notify_all()

    def read(self) -> LineBatch:
        with self._cond:
            count = min(len(self._queue), MAX_BATCH)
            lines = [self._queue.popleft() for _ in range(count)]
            first, self._next_lineno = self._next_lineno, self._next_lineno + count
            self._cond.notify_all()
        return LineBatch(first, lines)

    def flush(self) -> LineBatch:
        """The readers queue a pipe's unterminated last line at its EOF: nothing is held back here."""
        return self.read()

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._queue) or self._woken, timeout)
            self._woken = False

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def close(self) -> None:
        self.join(timeout=5)
