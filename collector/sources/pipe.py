"""A running command's output as a block source: shown live (tee) and parsed, stdout and stderr both.

One reader thread per pipe copies the bytes to our own stream as they come (progress bars and
partial lines included) and queues the whole lines among them, as blocks, for the pipeline. The
queue is bounded in bytes: a pipeline that falls behind slows the command down (as `tee` would), it
never drops lines. A pipe's unterminated last line is queued, as a whole line, when the pipe closes.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import IO

__all__ = ["ProcessOutput"]

READ_SIZE = 1 << 16
MAX_QUEUED = 8 << 20
MAX_BLOCK = 1 << 20


class ProcessOutput:
    """A `BlockSource` over pipes; `read()` after the command ended and `done` is true returns the rest."""

    def __init__(self, streams: list[tuple[IO[bytes], IO[bytes] | None]], *, max_queued: int = MAX_QUEUED) -> None:
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._max_queued = max_queued
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
            cut = data.rfind(b"\n")
            if cut < 0:
                carry += data
                continue
            self._put(carry + data[: cut + 1] if carry else data[: cut + 1])
            carry = data[cut + 1 :]
        if carry:
            self._put(carry + b"\n")  # the pipe is closed: its last line is whole now
        pipe.close()
        with self._cond:
            self._cond.notify_all()

    def _put(self, block: bytes) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._queued < self._max_queued)
            self._queue.append(block)
            self._queued += len(block)
            self._cond.notify_all()

    def read(self) -> bytes:
        """Queued whole lines, about `MAX_BLOCK` bytes at most (one pipe's read may exceed it)."""
        with self._cond:
            taken: list[bytes] = []
            size = 0
            while self._queue and (not taken or size + len(self._queue[0]) <= MAX_BLOCK):
                block = self._queue.popleft()
                taken.append(block)
                size += len(block)
            self._queued -= size
            self._cond.notify_all()
        return b"".join(taken)

    def flush(self) -> bytes:
        """Everything still queued (the readers queue a pipe's unterminated last line at its EOF)."""
        blocks: list[bytes] = []
        while block := self.read():
            blocks.append(block)
        return b"".join(blocks)

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
