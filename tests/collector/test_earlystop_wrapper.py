"""Early stopping against the injector's own wrapper (`injector.wrap`) run by a real `sh`: what may be signalled.

The wrapper found by the marker is never signalled; a training already gone ended on its own (no
`early-stopped` marker, no SetTrialStatus); the marker and the status call follow a delivered signal only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from katib_metrics.collector import stopper as stopper_module
from katib_metrics.collector.earlystop import Comparison, Decision, RuleEngine, StopRule
from katib_metrics.collector.lifecycle import ProcessInfo, ProcFS
from katib_metrics.collector.stopper import EarlyStop, descendants, training_tree
from katib_metrics.injector.wrap import WrapSpec, kubelet_expand, wrap_command
from katib_metrics.parsers.model import MetricLog, ObjectiveType
from tests.collector.grpc_doubles import RecordingEarlyStopping, start_server


def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)


def wrapped(tmp: Path, body: str, *, capture: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.Popen[str]:
    """`sh -c BODY` in the injector's wrapper with early stopping (StdOut kind: `capture`), after kubelet's
    expansion."""
    spec = WrapSpec(marker_dir=str(tmp), metrics_file=str(tmp / "m.log") if capture else None, early_stopping=True)
    command, args = wrap_command(["sh", "-c", body], spec)
    argv = [kubelet_expand(part, {}) for part in [*command, *args]]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env)


@dataclass
class Status:
    recorder: RecordingEarlyStopping
    address: str


@pytest.fixture
def status() -> Iterator[Status]:
    recorder = RecordingEarlyStopping()
    server, address = start_server(recorder)
    yield Status(recorder, address)
    server.stop(grace=None)


def decide(early: EarlyStop) -> Decision:
    decision = early.engine.observe([MetricLog("t", "accuracy", "0.1")])
    assert decision is not None
    return decision


def stopper(tmp: Path) -> EarlyStop:
    engine = RuleEngine([StopRule("accuracy", "0.5", Comparison.LESS, 0)], "accuracy", ObjectiveType.MAXIMIZE)
    return EarlyStop(engine, grace=5, marker_dir=tmp)


def test_the_wrapper_of_a_finished_training_is_never_signalled(tmp_path: Path, status: Status) -> None:
    # The training printed its last value and exited 0; a process it left in the background holds the
    # output pipe, so the wrapper still runs (waiting for its `tee`) when the rules first hold.
    background = tmp_path / "background"
    shell = wrapped(tmp_path, f"echo accuracy=0.1; sleep 60 & echo $! > {background}; exit 0")
    try:
        until(lambda: background.exists() and background.read_text().strip(), 20, "the background process")
        until(lambda: descendants(ProcFS().processes(), shell.pid) == [], 20, "the training's exit")
        early = stopper(tmp_path)
        early.act(decide(early))
        assert early.decision is None and early.kill is None and early.summary() is None
        assert not (tmp_path / f"{shell.pid}.pid").exists()  # no early-stopped marker
        assert early.conclude("trial-done", status.address, budget=5) == 0
        assert status.recorder.calls == 0  # no SetTrialStatus
    finally:
        if background.exists():
            os.kill(int(background.read_text()), signal.SIGKILL)
    out, _ = shell.communicate(timeout=20)
    assert shell.returncode == 0, out
    assert "Early Stopped" not in out
    assert (tmp_path / f"{shell.pid}.pid").read_text().strip() == "completed"


SLOW_RM = """#!/bin/sh
# `rm` that, removing the FIFO the wrapper waits on after the training, says who ran it and takes its time
# (so the rules can hold meanwhile).
case "$*" in *.done*) [ -e "$DONE" ] && echo "$PPID" > "$RM_BY.tmp" && mv "$RM_BY.tmp" "$RM_BY" && sleep 1;; esac
exec /bin/rm "$@"
"""


def test_the_wrapper_forks_nothing_after_the_training(tmp_path: Path, status: Status) -> None:
    # Its FIFOs are removed by the orphaned `tee` shell, not by the wrapper: a decision taken while that
    # cleanup runs finds no training below the wrapper and stops nothing.
    bin_dir, done, rm_by = tmp_path / "bin", tmp_path / "done", tmp_path / "rm-by"
    bin_dir.mkdir()
    (bin_dir / "rm").write_text(SLOW_RM)
    (bin_dir / "rm").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DONE": str(done), "RM_BY": str(rm_by)}
    shell = wrapped(tmp_path, f"echo accuracy=0.1; touch {done}", env=env)
    try:
        until(rm_by.exists, 20, "the FIFOs' removal")
        early = stopper(tmp_path)
        early.act(decide(early))
        assert early.decision is None and early.kill is None
        assert int(rm_by.read_text()) != shell.pid
        out, _ = shell.communicate(timeout=20)
        assert shell.returncode == 0 and "Early Stopped" not in out
        assert early.conclude("trial-done", status.address, budget=5) == 0 and status.recorder.calls == 0
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".katib-tee")) == []
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def test_a_running_training_under_the_wrapper_is_stopped_and_announced(tmp_path: Path, status: Status) -> None:
    ready = tmp_path / "ready"
    shell = wrapped(tmp_path, f"echo accuracy=0.1; touch {ready}; exec sleep 60")
    try:
        until(ready.exists, 20, "the training")
        until(lambda: len(descendants(ProcFS().processes(), shell.pid)) == 1, 20, "a single training process")
        early = stopper(tmp_path)
        early.act(decide(early))
        assert early.decision is not None and early.kill is not None
        out, _ = shell.communicate(timeout=20)
        assert shell.returncode == 0 and "Training Container was Early Stopped" in out
        assert early.kill.terminated != [] and shell.pid not in early.kill.terminated
        assert early.conclude("trial-stopped", status.address, budget=5) == 0
        assert status.recorder.trials == ["trial-stopped"]
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def test_a_training_gone_since_the_scan_is_not_announced(tmp_path: Path, status: Status) -> None:
    # The training exits in the instant between our scan and our signal: the scan is replayed stale. It stays
    # a zombie (not reaped), so its pid cannot be reused by another process meanwhile.
    finished = subprocess.Popen(["sleep", "60"])
    wrapper = subprocess.Popen(["sleep", "60"])
    try:
        snapshot = [ProcessInfo(wrapper.pid, os.getpid(), f"sh -c x; echo completed > {tmp_path}/$$.pid", "sh"),
                    ProcessInfo(finished.pid, wrapper.pid, "python train.py", "python")]
        finished.kill()
        until(lambda: not ProcFS().alive(finished.pid), 20, "the training's exit")

        class Stale(ProcFS):
            def processes(self) -> list[ProcessInfo]:
                return snapshot

        early = stopper(tmp_path)
        early.table = Stale()
        early.act(decide(early))
        assert early.decision is None and list(tmp_path.iterdir()) == []
        assert early.conclude("trial-gone", status.address, budget=5) == 0 and status.recorder.calls == 0
        assert wrapper.poll() is None  # the wrapper was left alone
    finally:
        for proc in (finished, wrapper):
            proc.kill()
            proc.wait()


def test_a_training_that_exits_as_the_marker_is_written_gets_the_marker_withdrawn(
        tmp_path: Path, status: Status, monkeypatch: pytest.MonkeyPatch) -> None:
    # The training dies (and its shell reaps it) between the permission probe and the SIGTERM: the pidfd
    # taken before says so (ESRCH), so the marker goes again and nothing is announced.
    shell = subprocess.Popen(["sh", "-c", f"sleep 60; : echo completed > {tmp_path}/$$.pid"],
                             start_new_session=True)
    try:
        until(lambda: len(descendants(ProcFS().processes(), shell.pid)) == 1, 20, "the training")
        training = descendants(ProcFS().processes(), shell.pid)[0]
        real = stopper_module.write_marker

        def dying_then_marked(marker_dir: Path, pid: int) -> Path:
            os.kill(training, signal.SIGKILL)
            until(lambda: not Path(f"/proc/{training}").exists(), 20, "the training's reaping")
            return real(marker_dir, pid)

        monkeypatch.setattr(stopper_module, "write_marker", dying_then_marked)
        early = stopper(tmp_path)
        early.act(decide(early))
        assert early.decision is None and early.marker is None
        assert not (tmp_path / f"{shell.pid}.pid").exists()  # written, then withdrawn
        assert early.conclude("trial-raced", status.address, budget=5) == 0 and status.recorder.calls == 0
        assert shell.wait(timeout=20) == 0  # the wrapper stand-in itself was never signalled
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def test_without_a_marker_the_training_is_not_stopped(tmp_path: Path, status: Status) -> None:
    # Stopped without the marker, the wrapper would report a failed training: so nothing is signalled.
    missing = tmp_path / "gone"
    ready = tmp_path / "ready"
    shell = wrapped(missing, f"touch {ready}; exec sleep 60", capture=False)
    try:
        until(ready.exists, 20, "the training")
        until(lambda: len(descendants(ProcFS().processes(), shell.pid)) == 1, 20, "a single training process")
        early = stopper(missing)
        early.act(decide(early))
        assert early.decision is None and early.blocked is not None and "marker" in early.blocked
        assert "Fix: make that directory writable" in early.problems[0]
        assert early.conclude("trial-unmarked", status.address, budget=5) == 0 and status.recorder.calls == 0
        assert shell.poll() is None
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_training_tree_skips_the_wrapper_and_its_forks() -> None:
    needle = "echo completed > /d/"
    wrapper = f"sh -c python t.py || [ $(head -n 1 /d/$$.pid) = early-stopped ]; {needle}$$.pid"
    procs = [ProcessInfo(30, 0, wrapper, "sh"), ProcessInfo(31, 30, "python t.py", "python"),
             ProcessInfo(32, 31, "python -c worker", "python"), ProcessInfo(33, 30, wrapper, "sh"),
             ProcessInfo(34, 33, "head -n 1 /d/30.pid", "head")]
    tree = training_tree(procs, 30, needle=needle)
    assert (tree.top, tree.all) == ((31,), (31, 32))
    # The training gone, the wrapper forking `$(head ...)` to read the marker: nothing to stop.
    assert training_tree([p for p in procs if p.pid not in (31, 32)], 30, needle=needle).all == ()
    # `run` stops the command it started itself, and everything below it.
    assert training_tree(procs, 31, needle=None, include_main=True).all == (31, 32)

