"""Waiting for the training: find its main process and marker as Katib does (reference §2.8), then wait.

Katib's rule, in a pod with `shareProcessNamespace: true`: container root processes are those whose
parent is outside the namespace (ppid 0); the main one is the root whose command line contains
`echo completed > <dir>` (else the first root), and when it is gone `<dir>/<pid>.pid` must say
`completed`. Outside a shared PID namespace (a plain machine, a test) the process whose command line
carries that marker is the main one wherever it sits in the tree. Differences (DESIGN 9): no busy
loops (we sleep on a pidfd or a wake-up pipe), mesh proxies are never waited for, kernel threads are
never candidates, a training that ended before we started is seen by its marker file, and a failed
training is an outcome to report, not a crash.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from katib_metrics.collector.proctable import ProcessInfo, ProcessTable, ProcFS

__all__ = [
    "MainProcesses",
    "Outcome",
    "ProcFS",
    "ProcessInfo",
    "ProcessTable",
    "WaitResult",
    "Waker",
    "find_main_processes",
    "marker_needle",
    "output_evidence",
    "wait_for_training",
]

COMPLETED = "completed"
EARLY_STOPPED = "early-stopped"


class Waker:
    """Sleeps on file descriptors (pidfds) and a self-pipe, so a signal handler can end any wait at once."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.woken = False

    def wake(self) -> None:
        """Safe from a signal handler or another thread."""
        self.woken = True
        with contextlib.suppress(BlockingIOError):  # a full pipe means a wake-up is already pending
            os.write(self._write, b"!")

    def sleep(self, seconds: float, fds: Iterable[int] = ()) -> None:
        if self.woken:
            return
        select.select([self._read, *fds], [], [], max(seconds, 0.0))

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


@dataclass(frozen=True, slots=True)
class MainProcesses:
    main: int
    waited: frozenset[int]  # includes main
    shared_namespace: bool


def marker_needle(marker_dir: Path) -> str:
    """The text that marks the wrapper's command line (with the trailing slash `/log` does not match
    `echo completed > /logs/...`, which Katib's substring does)."""
    return f"echo completed > {str(marker_dir).rstrip('/')}/"


def _wrappers(procs: list[ProcessInfo], marker_dir: Path | None) -> list[ProcessInfo]:
    """The processes carrying the marker that were not forked by another one, oldest first.

    A child the wrapper shell forks (for `"$@"`, a subshell, `rm`) carries the wrapper's command line
    until it execs or exits: its parent carries it too, so it is never the main process. Age (start
    time, then pid) decides between unrelated ones, e.g. one forked by a subshell that already exited.
    """
    if marker_dir is None:
        return []
    needle = marker_needle(marker_dir)
    marked = [p for p in procs if needle in p.cmdline]
    pids = {p.pid for p in marked}
    return sorted((p for p in marked if p.ppid not in pids), key=lambda p: (p.start, p.pid))


def find_main_processes(
    table: ProcessTable, marker_dir: Path | None, *, self_pid: int, mesh_proxies: Iterable[str] = ()
) -> MainProcesses | None:
    """Katib's GetMainProcesses with its fixes; None when no training process is visible.

    Katib takes the last marked root; we take the oldest marked process not forked by another marked
    one (see `_wrappers`): in a pod the same one, and exact on a plain machine while the wrapper forks.
    """
    proxies = set(mesh_proxies)
    procs = [p for p in table.processes()
             if p.pid not in (1, self_pid) and p.cmdline and p.name not in proxies]
    roots = [p for p in procs if p.ppid == 0]
    marked = _wrappers(procs, marker_dir)
    marked_roots = [p for p in marked if p.ppid == 0]
    if marked_roots:
        main = marked_roots[0].pid
        return MainProcesses(main, frozenset({main, *(p.pid for p in roots)}), True)
    if marked:
        return MainProcesses(marked[0].pid, frozenset({marked[0].pid}), False)
    if roots and marker_dir is None:
        return MainProcesses(roots[0].pid, frozenset(p.pid for p in roots), True)
    return None


class Outcome(enum.Enum):
    COMPLETED = "completed"  # marker says completed (also: ended before we started)
    EARLY_STOPPED = "early-stopped"
    FAILED = "failed"  # main process gone without a `completed` marker
    ENDED = "ended"  # no marker directory to ask: the process is gone, that is all we know
    TIMED_OUT = "timed out"
    INTERRUPTED = "interrupted"  # SIGTERM or an explicit stop


@dataclass(frozen=True, slots=True)
class WaitResult:
    outcome: Outcome
    detail: str
    main_pid: int | None = None


def read_marker(marker_dir: Path, pid: int) -> WaitResult:
    path = marker_dir / f"{pid}.pid"
    try:
        content = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as err:
        return WaitResult(Outcome.FAILED, f"training failed: no marker {path} ({err.strerror})", pid)
    if content == COMPLETED:
        return WaitResult(Outcome.COMPLETED, f"training completed (marker {path})", pid)
    if content == EARLY_STOPPED:
        return WaitResult(Outcome.EARLY_STOPPED, f"training was early-stopped (marker {path})", pid)
    return WaitResult(Outcome.FAILED, f"marker {path} says {content!r}, not {COMPLETED!r}", pid)


def completed_marker(marker_dir: Path | None) -> Path | None:
    """A `<pid>.pid` marker saying `completed`: the training ended before we looked."""
    if marker_dir is None:
        return None
    try:
        candidates = sorted(marker_dir.glob("*.pid"))
    except OSError:
        return None
    for path in candidates:
        try:
            content = path.read_text(encoding="utf-8", errors="replace") if path.stem.isdigit() else ""
        except OSError:
            continue
        if content.strip() == COMPLETED:
            return path
    return None


@dataclass
class Waiter:
    """One wait for the training; `wait_for_training` is its front door."""

    table: ProcessTable
    marker_dir: Path | None
    poll_interval: float
    timeout: float
    wait_all: bool
    waker: Waker
    mesh_proxies: tuple[str, ...]
    self_pid: int
    clock: Callable[[], float]
    evidence: Callable[[], str | None] = lambda: None

    def run(self) -> WaitResult:
        deadline = self.clock() + self.timeout if self.timeout > 0 else None
        found = self._find(deadline)
        if isinstance(found, WaitResult):
            return found
        return self._wait(found, deadline)

    def _expired(self, deadline: float | None) -> bool:
        return deadline is not None and self.clock() >= deadline

    def _find(self, deadline: float | None) -> MainProcesses | WaitResult:
        while True:
            if self.waker.woken:
                return WaitResult(Outcome.INTERRUPTED, "stopped before the training was found")
            trace = self.evidence()  # before the scan: whoever wrote it, if still running, is in the scan
            found = find_main_processes(self.table, self.marker_dir, self_pid=self.self_pid,
                                        mesh_proxies=self.mesh_proxies)
            if found is not None:
                return found
            marker = completed_marker(self.marker_dir)
            if marker is not None:
                return WaitResult(Outcome.COMPLETED, f"training had already completed (marker {marker})")
            if trace is not None:  # it ran (it wrote this) and is gone, without a `completed` marker
                return WaitResult(Outcome.FAILED, f"training failed before we found it: {trace} exists "
                                  "but no training process and no `completed` marker")
            if self._expired(deadline):
                return WaitResult(Outcome.TIMED_OUT, "timed out: no training process found "
                                  f"(looked for `{marker_needle(self.marker_dir)}` in command lines)"
                                  if self.marker_dir else "timed out: no training process found")
            self.waker.sleep(self.poll_interval)

    def _wait(self, procs: MainProcesses, deadline: float | None) -> WaitResult:
        waiting = set(procs.waited if self.wait_all else {procs.main})
        fds = {pid: self.table.open_pidfd(pid) for pid in waiting}
        result: WaitResult | None = None
        try:
            while waiting:
                for pid in sorted(waiting):
                    if self.table.alive(pid):
                        continue
                    waiting.discard(pid)
                    if pid == procs.main:
                        result = (read_marker(self.marker_dir, pid) if self.marker_dir is not None
                                  else WaitResult(Outcome.ENDED, f"training process {pid} ended", pid))
                        if result.outcome is Outcome.FAILED:
                            return result
                if not waiting:
                    break
                if self.waker.woken:
                    return WaitResult(Outcome.INTERRUPTED, "stopped while the training was running",
                                      procs.main)
                if self._expired(deadline):
                    return WaitResult(Outcome.TIMED_OUT, f"timed out waiting for pids {sorted(waiting)}",
                                      procs.main)
                live = [fd for pid, fd in fds.items() if pid in waiting and fd is not None]
                self.waker.sleep(self._nap(deadline), live)
        finally:
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)
        assert result is not None
        return result

    def _nap(self, deadline: float | None) -> float:
        if deadline is None:
            return self.poll_interval
        return min(self.poll_interval, max(deadline - self.clock(), 0.0))


def wait_for_training(
    marker_dir: Path | None,
    *,
    poll_interval: float = 1.0,
    timeout: float = 0.0,
    wait_all: bool = True,
    waker: Waker | None = None,
    table: ProcessTable | None = None,
    mesh_proxies: Iterable[str] = ("pilot-agent", "envoy", "linkerd2-proxy"),
    self_pid: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    evidence: Callable[[], str | None] = lambda: None,
) -> WaitResult:
    """Block until the training ends, the timeout passes or `waker.wake()`; never raises for its outcome.

    `evidence()` names something only a training that ran leaves behind (its metrics file): when it
    exists but no process carries the marker, the training ended before we looked.
    """
    own_waker = waker is None
    active = Waker() if waker is None else waker
    try:
        return Waiter(table or ProcFS(), marker_dir, poll_interval, timeout, wait_all, active,
                      tuple(mesh_proxies), os.getpid() if self_pid is None else self_pid, clock,
                      evidence).run()
    finally:
        if own_waker:
            active.close()


def output_evidence(path: Path | None) -> Callable[[], str | None]:
    """Evidence that a training ran: its metrics file exists, or its event directory holds anything
    but markers (the shell's redirect creates the file while the process exists, so a file with no
    process means the process is gone)."""

    def check() -> str | None:
        if path is None:
            return None
        if path.is_file():
            return str(path)
        try:
            if path.is_dir() and any(not entry.name.endswith(".pid") for entry in os.scandir(path)):
                return str(path)
        except OSError:
            return None
        return None

    return check
