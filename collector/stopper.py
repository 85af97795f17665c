"""The effects of an early-stopping decision: mark, stop the training's process tree, then tell Katib.

    Decision (collector.earlystop, in the reading thread)
      → `<dir>/<main pid>.pid` says `early-stopped` (so the wrapper's `||` branch exits 0, reference §4.5)
      → SIGTERM to every descendant of the main process; SIGKILL to the survivors after a grace period
      → (the sidecar waits for the training, drains and reports the observation log)
      → `EarlyStopping.SetTrialStatus` with a deadline and retries; exit 0 only once it succeeded

Fixes of reference §9 items 15-17: any number of children and their descendants, escalation to
SIGKILL, no busy waits (pidfds and `select`), and the status call is made by the main thread after
the final report, so nothing can exit before it completes. Signals go through pidfds where the
kernel has them, so a recycled PID is never signalled.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from katib_metrics.collector.earlystop import DEFAULT_STOP_GRACE, Decision, RuleEngine, RuleWatch, StopRule
from katib_metrics.collector.lifecycle import EARLY_STOPPED, ProcessInfo, ProcessTable, ProcFS, find_main_processes
from katib_metrics.collector.report import EarlyStoppingClient, TrialStatusError
from katib_metrics.collector.settings import Settings
from katib_metrics.collector.sources.base import LogSource
from katib_metrics.parsers.model import CollectorSpec

__all__ = ["EarlyStop", "TreeKill", "descendants", "early_stop_for", "tell_trial_stopped", "write_marker"]

log = logging.getLogger(__name__)

_FALLBACK_POLL = 0.05  # only without pidfds (an injected /proc): how often survivors are checked


def descendants(processes: Iterable[ProcessInfo], root: int) -> list[int]:
    """Every process below `root` in the tree, parents before children (root itself excluded)."""
    children: dict[int, list[int]] = {}
    for proc in processes:
        children.setdefault(proc.ppid, []).append(proc.pid)
    seen = {root}
    found: list[int] = []
    frontier = [root]
    while frontier:
        below = [pid for parent in frontier for pid in children.get(parent, ()) if pid not in seen]
        seen.update(below)
        found.extend(below)
        frontier = below
    return found


def write_marker(marker_dir: Path, pid: int) -> Path:
    """`<dir>/<pid>.pid` := `early-stopped` (no newline, as Katib), replaced atomically."""
    path = marker_dir / f"{pid}.pid"
    partial = marker_dir / f".{pid}.pid.early-stop"
    partial.write_bytes(EARLY_STOPPED.encode())
    os.replace(partial, path)
    return path


class _Snapshot:
    """One reading of the process table, so the main process and its tree come from the same scan."""

    def __init__(self, table: ProcessTable) -> None:
        self.table = table
        self.found = table.processes()

    def processes(self) -> list[ProcessInfo]:
        return self.found

    def alive(self, pid: int) -> bool:
        return self.table.alive(pid)

    def open_pidfd(self, pid: int) -> int | None:
        return self.table.open_pidfd(pid)


@dataclass
class _Target:
    pid: int
    fd: int | None  # a pidfd: signals reach exactly this process, and it polls readable on exit


class TreeKill:
    """SIGTERM now to `pids`, SIGKILL after `grace` to those still alive; `wait()` for the outcome."""

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

    def start(self) -> TreeKill:
        self.sigterm_at = time.time()
        for target in self._targets:
            if self._send(target, signal.SIGTERM):
                self.terminated.append(target.pid)
        self._thread.start()
        return self

    def _send(self, target: _Target, sig: signal.Signals) -> bool:
        try:
            if target.fd is not None:
                signal.pidfd_send_signal(target.fd, sig)
            else:
                os.kill(target.pid, sig)
        except ProcessLookupError:
            return False  # already gone: nothing to stop
        except OSError as err:  # EPERM: the sidecar does not run as the training's user
            self.failed[target.pid] = err.strerror or str(err)
            return False
        return True

    def _exited(self, target: _Target) -> bool:
        return not self.table.alive(target.pid)

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
                if target.fd is not None:
                    os.close(target.fd)
            self._done.set()

    def _wait_out(self, targets: list[_Target]) -> list[_Target]:
        """Sleep until every target exited or the grace period ends; the ones still running."""
        deadline = self.clock() + self.grace
        running = [t for t in targets if not self._exited(t)]
        while running and self.clock() < deadline:
            fds = [t.fd for t in running if t.fd is not None]
            nap = deadline - self.clock() if len(fds) == len(running) else min(_FALLBACK_POLL,
                                                                             deadline - self.clock())
            if fds:
                select.select(fds, [], [], max(nap, 0.0))
            else:
                self._done.wait(max(nap, 0.0))
            running = [t for t in running if not self._exited(t)]
        return running

    def wait(self, timeout: float | None = None) -> bool:
        """True once every signalled process exited or was SIGKILLed."""
        return self._done.wait(timeout)


def tell_trial_stopped(address: str, trial: str, *, budget: float) -> int:
    """SetTrialStatus with retries for at most `budget` seconds; the attempts it took, else raises."""
    with EarlyStoppingClient(address, timeout=budget, call_timeout=min(budget, 10.0)) as client:
        return client.set_trial_status(trial)


@dataclass
class EarlyStop:
    """One trial's early stopping: the rule engine, where its training is, and what was done."""

    engine: RuleEngine
    grace: float = DEFAULT_STOP_GRACE
    marker_dir: Path | None = None  # sidecar: where the wrapper's `<pid>.pid` marker lives
    root_pid: int | None = None  # `run`: the command we started (stopped too); sidecar: found by marker
    mesh_proxies: tuple[str, ...] = ()
    table: ProcessTable = field(default_factory=ProcFS)
    self_pid: int = field(default_factory=os.getpid)
    decision: Decision | None = None
    kill: TreeKill | None = None
    marker: Path | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def for_rules(cls, rules: Sequence[StopRule], spec: CollectorSpec, *, grace: float = DEFAULT_STOP_GRACE,
                  marker_dir: Path | None = None, root_pid: int | None = None,
                  mesh_proxies: Iterable[str] = ()) -> EarlyStop:
        """The sidecar gives `marker_dir` (the main process is found by it), `run` the `root_pid`."""
        engine = RuleEngine(rules, spec.objective, spec.objective_type)
        for name in sorted(engine.watched - set(spec.metric_names)) if spec.metric_names else ():
            log.warning("early-stopping rule on %r, which -m does not collect: it can never hold", name)
        return cls(engine, grace, marker_dir, root_pid, tuple(mesh_proxies))

    def watch(self, source: LogSource) -> LogSource:
        """`source`, with every log shown to the rules; the decision acts at once (see `act`)."""
        return RuleWatch(source, self.engine, self.act)

    def act(self, decision: Decision) -> None:
        """Mark and stop the training; called once, in the reading thread, right after the decision.

        Rules that first hold while the final lines are read, after the training ended on its own,
        stop nothing: such a trial is not early-stopped (no marker, no SetTrialStatus).
        """
        decided = time.time()
        snapshot = _Snapshot(self.table)
        main = self._main(snapshot)
        if main is None:
            log.info("early stopping: the rules hold only after the training ended: it is not early-stopped")
            return
        self.decision = decision
        pids = self._doomed(snapshot, *main)
        self.kill = TreeKill(pids, grace=self.grace, table=self.table).start()
        assert self.kill.sigterm_at is not None
        log.info("early stopping: SIGTERM sent to %d process(es) %s, %.1f ms after the decision; SIGKILL "
                 "after %gs", len(self.kill.terminated), self.kill.terminated,
                 (self.kill.sigterm_at - decided) * 1000, self.grace)
        for pid, why in self.kill.failed.items():
            self._problem(f"cannot signal training process {pid}: {why} (run the sidecar as the training's "
                          "user, in a pod with shareProcessNamespace: true)")

    def _main(self, snapshot: _Snapshot) -> tuple[int, bool] | None:
        """The main process and whether it is the training itself; None when it is gone."""
        if self.root_pid is not None:
            return (self.root_pid, True) if self.table.alive(self.root_pid) else None
        found = find_main_processes(snapshot, self.marker_dir, self_pid=self.self_pid,
                                    mesh_proxies=self.mesh_proxies)
        return None if found is None else (found.main, False)

    def _doomed(self, snapshot: _Snapshot, main: int, include_main: bool) -> list[int]:
        """Write the marker, then list what to signal: the main process's descendants (or it alone)."""
        if self.marker_dir is not None:
            try:
                self.marker = write_marker(self.marker_dir, main)
            except OSError as err:
                self._problem(f"cannot write the early-stopped marker in {self.marker_dir}: {err}")
        below = descendants(snapshot.found, main)
        # Without a wrapper shell around it the main process is the training itself.
        return [main, *below] if include_main or not below else below

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        log.error("early stopping: %s", text)

    def finish(self, timeout: float | None = None) -> bool:
        """Wait for the escalation to finish (bounded by the grace period); True when nothing is left."""
        return self.kill is None or self.kill.wait(self.grace + 5.0 if timeout is None else timeout)

    def conclude(self, trial: str, address: str, *, budget: float) -> int:
        """After the final report: tell the early-stopping service. 0 when not stopped or once told."""
        if self.decision is None:
            return 0
        if not self.finish():
            log.warning("early stopping: processes of the training are still being stopped")
        if self.kill is not None and not self.kill.terminated and self.kill.failed:
            log.error("early stopping: the rules held but no training process could be stopped, so trial %s "
                      "is not reported early-stopped (see the errors above)", trial)
            return 1
        if not address:
            log.warning("early stopping: trial %s was stopped but no -s-earlystop address was given: "
                        "Katib is not told", trial)
            return 0
        try:
            attempts = tell_trial_stopped(address, trial, budget=budget)
        except (TrialStatusError, ValueError) as err:
            log.error("early stopping: %s", err)
            return 1
        log.info("Trial status is successfully updated: %s early-stopped (%s) at %s in %d attempt(s)",
                 trial, self.decision.describe(), address, attempts)
        return 0

    def summary(self) -> str | None:
        """One line for people: stopped or not, by which rules."""
        if self.decision is None:
            return None
        rules = ", ".join(str(rule) for rule in self.decision.rules)
        return f"early-stopped by rule {rules} ({'; '.join(str(held) for held in self.decision.held)})"


def early_stop_for(settings: Settings) -> EarlyStop:
    """The sidecar's early stopping, from its settings (the main process is found by the marker dir)."""
    return EarlyStop.for_rules(settings.stop_rules, settings.spec, grace=settings.stop_grace,
                               marker_dir=settings.marker_dir, mesh_proxies=settings.mesh_proxies)
