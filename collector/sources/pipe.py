"""A running command's output as a block source: shown live (tee) and parsed, stdout and stderr both.

One reader thread per pipe copies the bytes to our own stream as they come (progress bars and
partial lines included) and queues the whole lines among them, as blocks, for the pipeline. The
queue is bounded in bytes: a pipeline that falls behind slows the command down (as `tee` would), it
never drops lines. A pipe's unterminated last line is queued, as a whole line, when the pipe closes.
A line longer than `MAX_LINE` (a progress bar's `\r` redraws) is queued in pieces without a newline,
never held whole; `read()` hands over one pipe's blocks at a time and says which in `stream`, so the
parser continues each piece with the next block of the same pipe.

The command's end ends the reading, not the pipes' end of file: processes it left running in the background
(a TensorBoard server, a leaked worker) inherit the pipes and may keep them open for hours. Once told the
command exited (`command_exited`), each reader still takes every byte that is in its pipe then (the
command's last output is never cut), and whatever else arrives within `AFTER_EXIT` seconds, then stops.
`left_open` names the processes that still held a pipe then.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import IO

from katib_metrics.collector.proctable import pipe_holders

__all__ = ["ProcessOutput"]

READ_SIZE = 1 << 16
MAX_QUEUED = 8 << 20
MAX_BLOCK = 1 << 20
MAX_LINE = 1 << 20
log = logging.getLogger(__name__)

AFTER_EXIT = 1.0  # seconds a pipe is still read after the command exited, for what its leftovers write


class ProcessOutput:
    """A `BlockSource` over pipes; `read()` after the command ended and `done` is true returns the rest."""

    def __init__(self, streams: list[tuple[IO[bytes], IO[bytes] | None]], *, max_queued: int = MAX_QUEUED) -> None:
        self._queue: deque[tuple[int, bytes]] = deque()
        self._queued = 0
        self.stream = 0  # the pipe (its index in `streams`) whose blocks the last `read()` returned
        self._cond = threading.Condition()
        self._max_queued = max_queued
        self._woken = False
        self._exited: float | None = None  # when reading ends, once the command exited (monotonic)
        self._wake_r, self._wake_w = os.pipe()
        self.left_open: list[str] = []  # "pid (name)" of processes holding a pipe when its reading ended
        self._threads = [threading.Thread(target=self._pump, args=(index, pipe, tee), daemon=True, name="tee")
                         for index, (pipe, tee) in enumerate(streams)]
        for thread in self._threads:
            thread.start()

    @property
    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def _pump(self, index: int, pipe: IO[bytes], tee: IO[bytes] | None) -> None:
        carry, in_pieces = b"", False
        fd = pipe.fileno()
        for data in self._chunks(fd):
            if tee is not None:
                try:
                    tee.write(data)
                    tee.flush()
                except Exception:  # showing the output must never stop its collection
                    log.exception("the command's output can no longer be shown; it is still collected")
                    tee = None
            cut = data.rfind(b"\n")
            if cut < 0:
                carry += data
                if len(carry) >= MAX_LINE:  # a runaway line goes on in pieces
                    self._put(index, carry)
                    carry, in_pieces = b"", True
                continue
            self._put(index, carry + data[: cut + 1] if carry else data[: cut + 1])
            carry, in_pieces = data[cut + 1 :], False
        if carry or in_pieces:
            self._put(index, carry + b"\n")  # the pipe is closed: its last line is whole now
        pipe.close()
        with self._cond:
            self._cond.notify_all()

    def command_exited(self, grace: float = AFTER_EXIT) -> None:
        """The command ended: each pipe is read to what it holds now, then for `grace` seconds at most."""
        self._exited = time.monotonic() + grace
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")

    def _chunks(self, fd: int) -> Iterator[bytes]:
        """The pipe's bytes as they come, until its end of file or, after the command exited, as above."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)  # readable from `command_exited` on
        owed: int | None = None  # bytes in the pipe when the exit was noticed: the command's last output
        while True:
            until = self._exited
            if until is not None and owed is None:
                poller.unregister(self._wake_r)
                owed = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            if until is not None and owed is not None and owed <= 0 and time.monotonic() >= until:
                self.left_open += [f"{info.pid} ({info.name})" for info in pipe_holders(fd)]
                return
            timeout = None if until is None or owed is None or owed > 0 else max(until - time.monotonic(), 0) * 1000
            if any(ready == fd for ready, _ in poller.poll(timeout)):
                data = os.read(fd, READ_SIZE)
                if not data:
                    return
                if owed is not None:
                    owed -= len(data)
                yield data

    def _put(self, index: int, block: bytes) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._queued < self._max_queued)
            self._queue.append((index, block))
            self._queued += len(block)
            self._cond.notify_all()

    def read(self) -> bytes:
        """One pipe's queued lines (`stream` says which), about `MAX_BLOCK` bytes at most (one read may exceed it)."""
        with self._cond:
            taken: list[bytes] = []
            size = 0
            if self._queue:
                self.stream = self._queue[0][0]
            while self._queue and self._queue[0][0] == self.stream and (
                    not taken or size + len(self._queue[0][1]) <= MAX_BLOCK):
                block = self._queue.popleft()[1]
                taken.append(block)
                size += len(block)
            self._queued -= size
            self._cond.notify_all()
        return b"".join(taken)

    def flush(self) -> bytes:
        """Nothing: every line is queued and handed over by `read()` (a pipe's last line is ended at its EOF)."""
        return b""

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
        """Waits a little for the readers; the wake pipe is closed once they are gone (only once)."""
        self.join(timeout=5)
        if self.done and self._wake_w >= 0:
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1
