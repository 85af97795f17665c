"""Early stopping end to end: real training processes in Katib's `sh -c` wrapper, the real sidecar, a real
db-manager and a recording EarlyStopping gRPC server on loopback; plus the stopper on real process trees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.earlystop import Comparison, RuleEngine, StopRule, parse_stop_rules
from katib_metrics.collector.lifecycle import ProcFS
from katib_metrics.collector.pipeline import Pipeline, open_source
from katib_metrics.collector.report import get_observation_log
from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc
from katib_metrics.collector.stopper import EarlyStop, TreeKill, descendants
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricLog, ObjectiveType
from katib_metrics.parsers.stats import ParseStats
from tests.collector.grpc_doubles import RecordingEarlyStopping, free_port, start_server

ROOT = Path(__file__).resolve().parents[2]
LATENCY_BOUND = 2.0  # generous for a shared 2-core machine; the measured figure is in benchmarks/RESULTS.md

# Accuracy stalls below 0.5 from the start; the rule `accuracy;0.5;less;3` may only act at the 3rd value.
STALL = """\
import json, os, signal, subprocess, sys, time
record, marker_dir = sys.argv[1], sys.argv[2]
ignore = "--ignore-term" in sys.argv
def note(name, text):
    with open(os.path.join(record, name), "a") as out:
        out.write(text)
if ignore:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild across exec
else:
    def on_term(signum, frame):
        at = time.time()
        try:
            with open(os.path.join(marker_dir, f"{os.getppid()}.pid")) as f:
                marker = f.read()
        except OSError as err:
            marker = repr(err)
        note("term", json.dumps({"at": at, "marker": marker}))
        os._exit(143)
    signal.signal(signal.SIGTERM, on_term)
grandchild = subprocess.Popen(["sleep", "300"])
note("grandchild", str(grandchild.pid))
for step, acc in enumerate([0.30, 0.35, 0.40] + [0.40] * 600, 1):
    note("written", f"{step} {time.time()!r}\\n")
    print(f"epoch={step} accuracy={acc:.2f} loss={1 - acc:.2f}", flush=True)
    time.sleep(0.2)
"""


def wrapped(train: str, log: Path, marker_dir: Path) -> str:
    """Katib's StdOut wrapper with early stopping (reference §4.5), as the shell receives it."""
    pid_file = f"{marker_dir}/$$.pid"
    return (f"{train} 1>{log} 2>&1 || if test -f {pid_file} && [ $(head -n 1 {pid_file}) = early-stopped ]; "
            "then echo Training Container was Early Stopped; else echo Training Container was Failed; exit 1; "
            f"fi && echo completed > {pid_file}")


@dataclass
class StatusRecorder(api_pb2_grpc.EarlyStoppingServicer):
    """Records each SetTrialStatus with the trial's observation log as the db-manager holds it then."""

    db_address: str
    calls: list[tuple[str, list[MetricLog]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def SetTrialStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        rows = get_observation_log(self.db_address, request.trial_name)
        with self._lock:
            self.calls.append((request.trial_name, rows))
        return api_pb2.SetTrialStatusReply()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


def gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie nobody reaped yet (it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)


def metrics_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Trial:
    """A sidecar plus its wrapped training, started in that order (the sidecar ready first)."""

    tmp: Path
    db: str
    earlystop: str
    extra: tuple[str, ...] = ()
    train_args: str = ""

    def start(self, name: str) -> Trial:
        self.name = name
        self.record = self.tmp / "record"
        self.record.mkdir()
        self.log = self.tmp / "metrics.log"
        (self.tmp / "stall.py").write_text(STALL)
        port = free_port()
        self.sidecar = subprocess.Popen(
            [sys.executable, "-m", "katib_metrics", "collect", "-t", name, "-m", "accuracy;loss",
             "-o-type", "maximize", "-s-db", self.db, "-path", str(self.log), "-format", "TEXT", "-p", "100ms",
             "-stop-rule", "accuracy;0.5;less;3", "-s-earlystop", self.earlystop, "--metrics-port", str(port),
             "--metrics-address", "127.0.0.1", *self.extra],
            cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        until(lambda: metrics_up(port) or self.sidecar.poll() is not None, 30, "the sidecar's /metrics")
        train = f"{sys.executable} {self.tmp / 'stall.py'} {self.record} {self.tmp} {self.train_args}"
        self.shell = subprocess.Popen(["sh", "-c", wrapped(train, self.log, self.tmp)], text=True,
                                      stdout=subprocess.PIPE, start_new_session=True)
        return self

    def finish(self) -> tuple[int, str, int, str]:
        try:
            shell_out, _ = self.shell.communicate(timeout=40)
            _, err = self.sidecar.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.sidecar.kill()
            raise AssertionError(f"the trial did not end; sidecar log:\n{self.sidecar.communicate()[1]}") from None
        finally:
            if self.shell.poll() is None:
                os.killpg(self.shell.pid, signal.SIGKILL)
                self.shell.wait()
            if self.sidecar.poll() is None:
                self.sidecar.kill()
                self.sidecar.wait()
        return self.shell.returncode, shell_out, self.sidecar.returncode, err

    def written(self) -> list[float]:
        return [float(line.split()[1]) for line in (self.record / "written").read_text().splitlines()]


def test_a_stalled_training_is_early_stopped_marked_reported_then_announced(tmp_path: Path,
                                                                             db: RunningServer) -> None:
    recorder = StatusRecorder(db.address)
    server, address = start_server(recorder)
    try:
        trial = Trial(tmp_path, db.address, address).start("trial-es")
        shell_status, shell_out, status, err = trial.finish()
    finally:
        server.stop(grace=None)
    assert status == 0, err
    # The wrapper took its `||` branch: the training died of our SIGTERM, the marker said early-stopped.
    assert shell_status == 0 and "Training Container was Early Stopped" in shell_out
    term = json.loads((trial.record / "term").read_text())
    assert term["marker"] == "early-stopped"
    assert (tmp_path / f"{trial.shell.pid}.pid").read_text().strip() == "completed"  # overwritten at the end
    # Not before the start step: the 3rd accuracy value decided.
    written = trial.written()
    assert len(written) >= 3
    assert "accuracy best so far 0.4 < 0.5 at report 3" in err
    latency = term["at"] - written[2]
    assert 0 < latency < LATENCY_BOUND, f"decision latency {latency * 1000:.0f} ms"
    # The grandchild (`sleep 300`) is gone too.
    grandchild = int((trial.record / "grandchild").read_text())
    until(lambda: gone(grandchild), 10, f"exit of grandchild {grandchild}")
    # Exactly one SetTrialStatus, after the report, which holds every value the training printed.
    assert [trial_name for trial_name, _ in recorder.calls] == ["trial-es"]
    reported = recorder.calls[0][1]
    printed = [line for line in trial.log.read_text().splitlines() if line.startswith("epoch=")]
    assert len(printed) == len(written)
    assert [r.value for r in reported if r.name == "accuracy"] == [
        line.split()[1].split("=")[1] for line in printed]
    assert len(reported) == 2 * len(printed)
    assert "Trial status is successfully updated" in err


def test_a_training_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path,
                                                                          db: RunningServer) -> None:
    recorder = RecordingEarlyStopping()
    server, address = start_server(recorder)
    try:
        trial = Trial(tmp_path, db.address, address, extra=("--stop-grace", "500ms"),
                      train_args="--ignore-term").start("trial-stubborn")
        shell_status, shell_out, status, err = trial.finish()
    finally:
        server.stop(grace=None)
    assert status == 0, err
    assert shell_status == 0 and "Early Stopped" in shell_out
    assert "SIGKILL to 2 process(es) still running 0.5s after SIGTERM" in err
    grandchild = int((trial.record / "grandchild").read_text())
    until(lambda: gone(grandchild), 10, f"exit of grandchild {grandchild}")
    assert recorder.trials == ["trial-stubborn"]
    # Killed no earlier than the grace period: lines kept coming for at least 0.5 s after the 3rd.
    written = trial.written()
    assert written[-1] - written[2] >= 0.3


def test_set_trial_status_is_retried_and_a_final_failure_exits_non_zero(tmp_path: Path,
                                                                        db: RunningServer) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    flaky = RecordingEarlyStopping(script=lambda n: grpc.StatusCode.UNAVAILABLE if n == 1 else None)
    server, address = start_server(flaky)
    try:
        shell_status, _, status, err = Trial(tmp_path / "a", db.address, address).start("trial-retry").finish()
    finally:
        server.stop(grace=None)
    assert (shell_status, status) == (0, 0), err
    assert flaky.calls == 2 and flaky.trials == ["trial-retry"]

    refusing = RecordingEarlyStopping(script=lambda n: grpc.StatusCode.NOT_FOUND)
    server, address = start_server(refusing)
    try:
        _, _, status, err = Trial(tmp_path / "b", db.address, address).start("trial-refused").finish()
    finally:
        server.stop(grace=None)
    assert status == 1
    assert "NOT_FOUND" in err and "trial-refused" in err
    assert len(get_observation_log(db.address, "trial-refused", "accuracy")) >= 3  # reported before


def test_run_command_stops_early_and_says_by_which_rule(tmp_path: Path) -> None:
    record = tmp_path / "record"
    record.mkdir()
    (tmp_path / "stall.py").write_text(STALL)
    done = subprocess.run(
        [sys.executable, "-m", "katib_metrics", "run", "--db", str(tmp_path / "local.db"), "--trial", "local-es",
         "-m", "accuracy", "--objective-type", "maximize", "--stop-rule", "accuracy;0.5;less;3", "--",
         sys.executable, str(tmp_path / "stall.py"), str(record), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ("trial local-es: early-stopped by rule accuracy;0.5;less;3 "
            "(accuracy best so far 0.4 < 0.5 at report 3)") in done.stdout
    grandchild = int((record / "grandchild").read_text())
    until(lambda: gone(grandchild), 10, f"exit of grandchild {grandchild}")
    written = (record / "written").read_text().splitlines()
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith("accuracy ")}
    assert table["accuracy"][-1] == str(len(written)) and len(written) >= 3  # every printed value counted


def test_run_rejects_a_bad_rule_naming_it(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "katib_metrics", "run", "--stop-rule", "accuracy;0.5;less",
                           "--", "true"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "'accuracy;0.5;less'" in done.stderr and "Traceback" not in done.stderr


def tree(depth: int, ignore_term: bool = False) -> subprocess.Popen[bytes]:
    """`sh` → `sh` → ... → `sleep`: a chain of `depth` shells below the root."""
    command = "sleep 300"
    for _ in range(depth):
        command = f"sh -c '{command}; :'" if "'" not in command else f'sh -c "{command}; :"'
    trap = "trap '' TERM; " if ignore_term else ""
    return subprocess.Popen(["sh", "-c", f"{trap}{command}; :"], start_new_session=True)


def test_tree_kill_reaches_every_descendant_and_escalates(tmp_path: Path) -> None:
    root = tree(2, ignore_term=True)
    try:
        table = ProcFS()
        until(lambda: len(descendants(table.processes(), root.pid)) == 3, 10, "the process tree")
        below = descendants(table.processes(), root.pid)
        started = time.monotonic()
        kill = TreeKill(below, grace=0.3, table=table).start()
        assert kill.wait(10)
        assert time.monotonic() - started >= 0.3
        assert sorted(kill.terminated) == sorted(below) and sorted(kill.killed) == sorted(below)
        until(lambda: all(gone(pid) for pid in below), 10, "the tree's exit")
        assert root.wait(timeout=10) == 0  # the root shell itself was left alone (it ran `:` and ended)
    finally:
        if root.poll() is None:
            os.killpg(root.pid, signal.SIGKILL)
            root.wait()


def test_tree_kill_without_escalation_when_sigterm_suffices() -> None:
    root = tree(1)
    try:
        table = ProcFS()
        until(lambda: len(descendants(table.processes(), root.pid)) == 2, 10, "the process tree")
        kill = TreeKill(descendants(table.processes(), root.pid), grace=30, table=table).start()
        assert kill.wait(10)  # the pidfds woke the wait long before the grace period
        assert kill.killed == [] and len(kill.terminated) == 2
    finally:
        if root.poll() is None:
            os.killpg(root.pid, signal.SIGKILL)
        root.wait()


def test_the_process_carrying_the_marker_is_never_signalled(tmp_path: Path) -> None:
    # The process found by the marker is the wrapper, even with no child left: the training is gone.
    marker_dir = tmp_path
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                             f"echo completed > {marker_dir}/"])
    try:
        early = EarlyStop(RuleEngine([StopRule("loss", "1", Comparison.LESS, 0)], "loss", ObjectiveType.MINIMIZE),
                          grace=5, marker_dir=marker_dir)
        until(lambda: f"echo completed > {marker_dir}/" in
              " ".join(p.cmdline for p in ProcFS().processes() if p.pid == proc.pid), 10, "the process")
        decision = early.engine.observe([MetricLog("t", "loss", "0.5")])
        assert decision is not None
        early.act(decision)
        assert early.decision is None and early.kill is None and list(marker_dir.iterdir()) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_rules_that_hold_after_the_training_ended_stop_nothing(tmp_path: Path) -> None:
    # The final lines are read after the training completed on its own: it is not early-stopped.
    early = EarlyStop(RuleEngine([StopRule("loss", "1", Comparison.LESS, 0)], "loss"), marker_dir=tmp_path)
    decision = early.engine.observe([MetricLog("t", "loss", "0.5")])
    assert decision is not None
    early.act(decision)
    assert early.decision is None and early.kill is None and list(tmp_path.iterdir()) == []
    assert early.conclude("t", "127.0.0.1:1", budget=1) == 0 and early.summary() is None
    ended = subprocess.Popen(["true"])
    ended.wait()
    early = EarlyStop(RuleEngine([StopRule("loss", "1", Comparison.LESS, 0)], "loss"), root_pid=ended.pid)
    decision = early.engine.observe([MetricLog("t", "loss", "0.5")])
    assert decision is not None
    early.act(decision)
    assert early.decision is None


# The same rule on every source kind: the writer is a real process; the rule stops it at its 3rd value.
WRITERS = {
    FileFormat.JSON: """\
import json, sys, time
with open(sys.argv[1], "a") as out:
    for step in range(1, 600):
        out.write(json.dumps({"accuracy": round(0.30 + step / 100, 2), "loss": "x"}) + "\\n")
        out.flush()
        time.sleep(0.1)
""",
    FileFormat.TFEVENT: """\
import sys, time
from tensorboardX import SummaryWriter
writer = SummaryWriter(sys.argv[1])
for step in range(1, 600):
    writer.add_scalar("accuracy", 0.30 + step / 100, step)
    writer.flush()
    time.sleep(0.1)
""",
    FileFormat.PROMETHEUS: """\
import sys, time
from prometheus_client import Gauge, start_http_server
accuracy = Gauge("accuracy", "training accuracy")
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
for step in range(1, 600):
    accuracy.set(0.30 + step / 100)
    time.sleep(0.15)
""",
}


@pytest.mark.parametrize("kind", list(WRITERS), ids=str)
def test_rules_act_on_every_source_kind(tmp_path: Path, kind: FileFormat) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITERS[kind])
    port = free_port()
    where = {FileFormat.JSON: tmp_path / "metrics.json", FileFormat.TFEVENT: tmp_path / "events"}.get(kind)
    target = str(port) if kind is FileFormat.PROMETHEUS else str(where)
    spec = CollectorSpec(("accuracy", "loss"), (), kind, ObjectiveType.MAXIMIZE)
    writer = subprocess.Popen([sys.executable, str(script), target])
    stats = ParseStats()
    store = MetricStore(spec, stats=stats)
    source = open_source(spec, path=where, stats=stats, scrape_interval=0.05,
                         prometheus_url=f"http://127.0.0.1:{port}/metrics")
    early = EarlyStop.for_rules(parse_stop_rules(["accuracy;0.5;less;3"]), spec, grace=5, root_pid=writer.pid)
    pipeline = Pipeline(early.watch(source), store).start()
    try:
        assert writer.wait(timeout=30) == -signal.SIGTERM
        assert pipeline.stop(timeout=10)
    finally:
        source.close()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert early.decision is not None
    assert early.decision.trigger.name == "accuracy"
    assert "at report 3" in early.decision.describe()
    accuracy = [row.value for row in store.all_rows() if row.name == "accuracy"]
    assert len(accuracy) >= 3 and [round(float(v), 6) for v in accuracy[:3]] == [0.31, 0.32, 0.33]
    if kind is FileFormat.JSON:
        assert not early.engine.skipped and stats.skipped_total >= 3  # "x" is skipped by the parser
    store.close()


def test_a_training_that_cannot_be_signalled_is_not_announced(tmp_path: Path) -> None:
    # A refused signal made by a table whose "pidfds" the kernel rejects (EPERM itself, with real users:
    # tests/collector/test_earlystop_privileges.py).
    class Refusing(ProcFS):
        def open_pidfd(self, pid: int) -> int | None:
            return os.open("/dev/null", os.O_RDONLY)  # not a pidfd: pidfd_send_signal fails (EBADF)

    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        engine = RuleEngine([StopRule("loss", "1", Comparison.LESS, 0)], "loss")
        early = EarlyStop(engine, grace=0.2, root_pid=sleeper.pid, table=Refusing())
        decision = engine.observe([MetricLog("t", "loss", "0.5")])
        assert decision is not None
        early.act(decision)
        assert early.decision is None and early.kill is None and early.blocked is not None
        assert "the training cannot be stopped" in early.problems[0] and "Fix:" in early.problems[0]
        assert early.conclude("t", "127.0.0.1:1", budget=1) == 0  # it never fails the trial
        assert sleeper.poll() is None  # nothing was stopped
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_misspelt_rule_is_named_at_the_start_and_at_the_end_by_run_and_by_the_sidecar(
        tmp_path: Path, db: RunningServer) -> None:
    rule = "acuracy;0.6;less;1"
    done = subprocess.run(
        [sys.executable, "-m", "katib_metrics", "run", "--db", str(tmp_path / "local.db"), "-m", "accuracy",
         "--stop-rule", rule, "--", "sh", "-c", "echo accuracy=0.5; echo accuracy=0.4"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rule on 'acuracy', which -m does not collect" in done.stderr
    assert f"rule {rule} never held: the collection saw no value of 'acuracy'; did you mean 'accuracy'?" \
        in done.stderr
    # The sidecar, for a training that already completed (its marker says so): collected at once.
    log = tmp_path / "metrics.log"
    log.write_text("accuracy=0.5\naccuracy=0.4\n")
    (tmp_path / "4242.pid").write_text("completed")
    sidecar = subprocess.run(
        [sys.executable, "-m", "katib_metrics", "collect", "-t", "typo", "-m", "accuracy", "-s-db", db.address,
         "-path", str(log), "-format", "TEXT", "-stop-rule", rule, "-s-earlystop", "127.0.0.1:1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert sidecar.returncode == 0, sidecar.stderr
    assert "which -m does not collect" in sidecar.stderr
    assert f"rule {rule} never held: the collection saw no value of 'acuracy'; did you mean 'accuracy'?" \
        in sidecar.stderr
