"""Which processes are the training, and stopping them: a permission probe, SIGTERM, SIGKILL after a grace.

Signals go through pidfds where the kernel has them, so a recycled PID is never signalled; waits
sleep on the pidfds (no busy loops). Signal 0 checks permission without delivering anything, so a
refused stop is known before any marker is written (docs/early-stopping.md).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from katib_metrics.collector.lifecycle import ProcessInfo, ProcessTable

__all__ = ["TrainingTree", "TreeKill", "descendants", "training_tree"]

log = logging.getLogger(__name__)

_FALLBACK_POLL = 0.05  # only without pidfds (an injected /proc): how often survivors are checked


def _children(processes: Iterable[ProcessInfo]) -> dict[int, list[ProcessInfo]]:
    children: dict[int, list[ProcessInfo]] = {}
    for proc in processes:
        children.setdefault(proc.ppid, []).append(proc)
    return children


def descendants(processes: Iterable[ProcessInfo], root: int) -> list[int]:
    """Every process below `root` in the tree, parents before children (root itself excluded)."""
    return list(_walk(_children(processes), [root], lambda proc: True))


def _walk(children: dict[int, list[ProcessInfo]], roots: list[int],
          keep: Callable[[ProcessInfo], bool]) -> list[int]:
    seen = set(roots)
    found: list[int] = []
    frontier = roots
    while frontier:
        below = [p.pid for parent in frontier for p in children.get(parent, ()) if p.pid not in seen and keep(p)]
        seen.update(below)
        found.extend(below)
        frontier = below
    return found


@dataclass(frozen=True, slots=True)
class TrainingTree:
    """What stopping the training means: `top` are the processes whose end ends the training (the
    wrapper's child; `run`'s command), `all` is them and everything below, parents first."""

    top: tuple[int, ...]
    all: tuple[int, ...]


def training_tree(processes: Iterable[ProcessInfo], main: int, *, needle: str | None,
                  include_main: bool = False) -> TrainingTree:
    """The training below the wrapper `main` (or `main` itself with `include_main`, for `run`).

    The wrapper is never part of it, nor any process carrying the wrapper's command line (`needle`):
    those are the wrapper's own forks (before their exec, or `$(head ...)` reading the marker), which
    run after the training ended too. Without such a process left, the training is gone.
    """
    children = _children(processes)

    def keep(proc: ProcessInfo) -> bool:
        return proc.pid != main and (needle is None or needle not in proc.cmdline)

    if include_main:
        return TrainingTree((main,), (main, *_walk(children, [main], keep)))
    top = [p.pid for p in children.get(main, ()) if keep(p)]
    return TrainingTree(tuple(top), (*top, *_walk(children, top, keep)))


@dataclass
class _Target:
    pid: int
    fd: int | None  # a pidfd: signals reach exactly this process, and it polls readable on exit


class TreeKill:
    """`probe()` which may be signalled, then SIGTERM to them, SIGKILL after `grace` to those still alive."""

    def __init__(self, pids: Sequence[int], *, grace: float, table: ProcessTable,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.table = table
        self.clock = clock
        self.terminated: list[int] = []
        self.killed: list[int] = []
        self.failed: dict[int, str] = {}
        self.sigterm_at: float | None = None  # wall clock, for the logs and the latency measurement
        self._targets = [_Target(pid, table.open_pidfd(pid)) for pid in pids]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._escalate, name="early-stop-kill", daemon=True)

    @property
    def pids(self) -> list[int]:
        """The targets still running at the last probe."""
        return [target.pid for target in self._targets]

    def probe(self) -> dict[int, str]:
        """Signal 0 (a permission check that delivers nothing): drops targets already gone (zombies too)
        and returns those that refuse, pid → why."""
        refused: dict[int, str] = {}
        running: list[_Target] = []
        for target in self._targets:
            try:
                alive = self.table.alive(target.pid) and self._signal(target, 0)
            except OSError as err:  # EPERM: another user's process, and no CAP_KILL
                refused[target.pid] = err.strerror or str(err)
                alive = True
            if alive:
                running.append(target)
            else:
                self._close(target)
        self._targets = running
        return refused

    def start(self) -> TreeKill:
        self.sigterm_at = time.time()
        for target in self._targets:
            if self._send(target, signal.SIGTERM):
                self.terminated.append(target.pid)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Nothing is sent: release the pidfds."""
        for target in self._targets:
            self._close(target)
        self._done.set()

    @staticmethod
    def _signal(target: _Target, sig: int) -> bool:
        """False when the process is gone; other errors raise."""
        try:
            if target.fd is not None:
                signal.pidfd_send_signal(target.fd, sig)
            else:
                os.kill(target.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _send(self, target: _Target, sig: signal.Signals) -> bool:
        try:
            return self._signal(target, sig)
        except OSError as err:  # EPERM: the collector may not signal this process
            self.failed[target.pid] = err.strerror or str(err)
            return False

    @staticmethod
    def _close(target: _Target) -> None:
        if target.fd is not None:
            os.close(target.fd)
            target.fd = None

    def _escalate(self) -> None:
        try:
            survivors = self._wait_out([t for t in self._targets if t.pid in self.terminated])
            for target in survivors:
                if self._send(target, signal.SIGKILL):
                    self.killed.append(target.pid)
            if self.killed:
                log.warning("early stopping: SIGKILL to %d process(es) still running %gs after SIGTERM: %s",
                            len(self.killed), self.grace, self.killed)
        finally:
            for target in self._targets:
                self._close(target)
            self._done.set()

    def _wait_out(self, targets: list[_Target]) -> list[_Target]:
        """Sleep until every target exited or the grace period ends; the ones still running."""
        deadline = self.clock() + self.grace
        running = [t for t in targets if self.table.alive(t.pid)]
        while running and self.clock() < deadline:
            fds = [t.fd for t in running if t.fd is not None]
            nap = deadline - self.clock() if len(fds) == len(running) else min(_FALLBACK_POLL,
                                                                             deadline - self.clock())
            if fds:
                select.select(fds, [], [], max(nap, 0.0))
            else:
                self._done.wait(max(nap, 0.0))
            running = [t for t in running if self.table.alive(t.pid)]
        return running

    def wait(self, timeout: float | None = None) -> bool:
        """True once every signalled process exited or was SIGKILLed (or nothing was sent)."""
        return self._done.wait(timeout)
