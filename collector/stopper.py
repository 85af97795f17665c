"""The effects of an early-stopping decision: stop the training's process tree, mark it, then tell Katib.

    Decision (collector.earlystop, in the reading thread)
      → the training: the wrapper's child and everything below it (never the wrapper), or `run`'s command
      → signal 0 to each: a training already gone ended on its own; one that refuses (EPERM) cannot be
        stopped: say why and how to fix it, and let it run to its end (docs/early-stopping.md)
      → `<dir>/<main pid>.pid` says `early-stopped` (so the wrapper's `||` branch exits 0, reference §4.5)
      → SIGTERM to the training's tree; SIGKILL to the survivors after a grace period; if no SIGTERM
        reached the training the marker is withdrawn and nothing is announced
      → (the sidecar waits for the training, drains and reports the observation log)
      → `EarlyStopping.SetTrialStatus` with a deadline and retries, only after a delivered SIGTERM

Fixes of reference §9 items 15-17: any number of children and their descendants, escalation to
SIGKILL, no busy waits (pidfds and `select`), and the status call is made by the main thread after
the final report, so nothing can exit before it completes. The collector never fails a trial for
what it could not do: it cannot stop the training → exit 0, with the reason in its log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from katib_metrics.collector.earlystop import DEFAULT_STOP_GRACE, Decision, RuleEngine, RuleWatch, StopRule
from katib_metrics.collector.lifecycle import (
    EARLY_STOPPED,
    ProcessInfo,
    ProcessTable,
    ProcFS,
    find_main_processes,
    marker_needle,
)
from katib_metrics.collector.report import EarlyStoppingClient, TrialStatusError
from katib_metrics.collector.settings import Settings
from katib_metrics.collector.sources.base import LogSource
from katib_metrics.collector.treekill import TrainingTree, TreeKill, descendants, training_tree
from katib_metrics.parsers.model import CollectorSpec

__all__ = ["EarlyStop", "TreeKill", "descendants", "early_stop_for", "tell_trial_stopped", "training_tree",
           "write_marker"]

log = logging.getLogger(__name__)

_FIX = ("run the collector as the training's user (securityContext.runAsUser on the training container; with "
        "Katib's webhook also init.controller.injectSecurityContext: true) or as root with CAP_KILL, in a pod "
        "with shareProcessNamespace: true (docs/early-stopping.md)")


def write_marker(marker_dir: Path, pid: int) -> Path:
    """`<dir>/<pid>.pid` := `early-stopped` (no newline, as Katib), replaced atomically."""
    path = marker_dir / f"{pid}.pid"
    partial = marker_dir / f".{pid}.pid.early-stop"
    partial.write_bytes(EARLY_STOPPED.encode())
    os.replace(partial, path)
    return path


def withdraw_marker(path: Path) -> None:
    """Remove our `early-stopped` marker when no signal followed it (the wrapper's own `completed` stays)."""
    try:
        if path.read_bytes() == EARLY_STOPPED.encode():
            path.unlink()
    except OSError:
        pass


def _who(pid: int) -> str:
    """`uid N` of a process, for the message that says why it cannot be signalled."""
    try:
        return f"uid {os.stat(f'/proc/{pid}').st_uid}"
    except OSError:
        return "uid unknown"


def _can_kill() -> bool:
    """Whether this process has CAP_KILL in its effective set (bit 5 of CapEff)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 5))
    except (OSError, ValueError):
        pass
    return False


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
    blocked: str | None = None  # why the training could not be stopped although every rule held
    _main_pid: int | None = None  # the wrapper found by the marker: never signalled

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
        """Stop the training; called once, in the reading thread, right after the decision.

        The decision counts (marker, SetTrialStatus) only once SIGTERM reached the training. Rules that
        first hold after the training ended on its own stop nothing; a training that refuses our signals
        runs to its end (the reason is logged; the collector still reports everything and exits 0).
        """
        decided = time.time()
        tree = self._tree(_Snapshot(self.table))
        kill = TreeKill(tree.all, grace=self.grace, table=self.table)
        refused = kill.probe()
        top = [pid for pid in tree.top if pid in kill.pids]
        if not top:
            kill.cancel()
            log.info("early stopping: the rules hold only after the training ended: it ended on its own "
                     "and is not early-stopped")
            return
        if blocked := {pid: refused[pid] for pid in top if pid in refused}:
            kill.cancel()
            self._cannot_stop(", ".join(f"process {pid} ({_who(pid)}): {why}" for pid, why in blocked.items())
                              + f"; this collector runs as uid {os.geteuid()} "
                              + ("with" if _can_kill() else "without") + " CAP_KILL", _FIX)
            return
        if not self._mark(kill):
            return
        kill.start()
        if not any(pid in kill.terminated for pid in top):  # it exited between the probe and the signal
            if self.marker is not None:
                withdraw_marker(self.marker)
                self.marker = None
            log.info("early stopping: the training ended on its own as it was being stopped: not early-stopped")
            return
        self.decision, self.kill = decision, kill
        assert kill.sigterm_at is not None
        log.info("early stopping: SIGTERM sent to %d process(es) %s, %.1f ms after the decision; SIGKILL "
                 "after %gs", len(kill.terminated), kill.terminated, (kill.sigterm_at - decided) * 1000, self.grace)
        for pid, why in kill.failed.items():
            self._problem(f"cannot signal training process {pid} ({_who(pid)}): {why}; it may keep running. "
                          f"Fix: {_FIX}")

    def _tree(self, snapshot: _Snapshot) -> TrainingTree:
        """The training to stop: `run`'s command and its tree, else what runs below the wrapper."""
        if self.root_pid is not None:
            return training_tree(snapshot.found, self.root_pid, needle=None, include_main=True)
        found = find_main_processes(snapshot, self.marker_dir, self_pid=self.self_pid,
                                    mesh_proxies=self.mesh_proxies)
        if found is None:
            return TrainingTree((), ())
        if self.marker_dir is None:  # no wrapper (kind PrometheusMetric): the main process is the training
            return training_tree(snapshot.found, found.main, needle=None, include_main=True)
        self._main_pid = found.main
        return training_tree(snapshot.found, found.main, needle=marker_needle(self.marker_dir))

    def _mark(self, kill: TreeKill) -> bool:
        """The marker goes first, so the wrapper reads it when the training dies; False when it cannot."""
        if self.marker_dir is None or self._main_pid is None:
            return True
        try:
            self.marker = write_marker(self.marker_dir, self._main_pid)
        except OSError as err:
            kill.cancel()
            self._cannot_stop(f"cannot write the early-stopped marker in {self.marker_dir} ({err.strerror}), "
                              "without which the wrapper would report the stopped training as failed",
                              "make that directory writable by the collector's user")
            return False
        return True

    def _cannot_stop(self, why: str, fix: str) -> None:
        self.blocked = why
        self._problem(f"every rule holds but the training cannot be stopped: {why}. It runs to its end, its own "
                      f"outcome decides the trial and everything collected is still reported. Fix: {fix}")

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        log.error("early stopping: %s", text)

    def finish(self, timeout: float | None = None) -> bool:
        """Wait for the escalation to finish (bounded by the grace period); True when nothing is left."""
        return self.kill is None or self.kill.wait(self.grace + 5.0 if timeout is None else timeout)

    def conclude(self, trial: str, address: str, *, budget: float) -> int:
        """After the final report: tell the early-stopping service. 0 when not stopped or once told."""
        if self.decision is None:
            if self.blocked is not None:
                log.warning("early stopping: trial %s was not stopped although every rule held (the training "
                            "could not be stopped, see above); it is not reported early-stopped", trial)
            return 0
        if not self.finish():
            log.warning("early stopping: processes of the training are still being stopped")
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
