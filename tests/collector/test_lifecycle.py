"""Finding and waiting for the training: Katib's rules on a /proc tree, and real `sh` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from katib_metrics.collector.lifecycle import (
    MainProcesses,
    Outcome,
    ProcFS,
    Waiter,
    WaitResult,
    Waker,
    find_main_processes,
    output_evidence,
    wait_for_training,
)
from katib_metrics.injector.wrap import WrapSpec, kubelet_expand, wrap_command

MARKER = "/var/log/katib"
WRAPPED = f"sh -c python train.py 1>{MARKER}/metrics.log 2>&1 && echo completed > {MARKER}/$$.pid"


def fake_proc(root: Path, procs: dict[int, tuple[int, str, str]]) -> ProcFS:
    """A /proc tree: pid → (ppid, state, argv joined by NUL)."""
    for pid, (ppid, state, argv) in procs.items():
        base = root / str(pid)
        base.mkdir(parents=True, exist_ok=True)
        name = argv.split("\0")[0].rsplit("/", 1)[-1][:15] or "kworker/0:1"
        (base / "stat").write_text(f"{pid} ({name}) {state} {ppid} 1 1 0 -1\n")
        (base / "cmdline").write_bytes(argv.encode() + (b"\0" if argv else b""))
    return ProcFS(root)


def pod_tree(root: Path) -> ProcFS:
    return fake_proc(root, {
        1: (0, "S", "/pause"),
        7: (0, "S", "/usr/local/bin/pilot-agent\0proxy\0sidecar"),
        8: (7, "S", "/usr/local/bin/envoy\0-c\0envoy.yaml"),
        20: (0, "S", "/usr/local/bin/envoy\0--standalone"),
        30: (0, "S", "sh\0-c\0" + WRAPPED.removeprefix("sh -c ")),
        31: (30, "S", "python\0train.py"),
        40: (0, "S", "/bin/logger\0--follow"),
        50: (0, "S", "katib-metrics\0collect"),
    })


def test_katib_rule_in_a_shared_pid_namespace(tmp_path: Path) -> None:
    found = find_main_processes(pod_tree(tmp_path), Path(MARKER), self_pid=50,
                                mesh_proxies=("pilot-agent", "envoy", "linkerd2-proxy"))
    # Mesh proxies (by executable name) and our own process are never waited for; children are not roots.
    assert found == MainProcesses(30, frozenset({30, 40}), shared_namespace=True)


def test_without_mesh_exclusions_katib_waits_for_proxies(tmp_path: Path) -> None:
    found = find_main_processes(pod_tree(tmp_path), Path(MARKER), self_pid=50)
    assert found is not None and found.waited == {7, 20, 30, 40}


def test_plain_machine_marker_anywhere_in_the_tree(tmp_path: Path) -> None:
    table = fake_proc(tmp_path, {1: (0, "S", "/sbin/init"), 2: (0, "S", ""), 900: (1, "S", "bash"),
                                 901: (900, "S", "sh\0-c\0python t.py && echo completed > /tmp/x/$$.pid"),
                                 902: (901, "S", "python\0t.py")})
    found = find_main_processes(table, Path("/tmp/x"), self_pid=5)
    assert found == MainProcesses(901, frozenset({901}), False)
    # `/tmp/x` must not match a marker under `/tmp/xy`; kernel threads (empty cmdline) are never picked.
    assert find_main_processes(table, Path("/tmp/xy"), self_pid=5) is None


def test_first_root_without_marker_dir(tmp_path: Path) -> None:
    table = fake_proc(tmp_path, {1: (0, "S", "/pause"), 12: (0, "S", "python\0serve.py"),
                                 13: (0, "S", "envoy")})
    assert find_main_processes(table, None, self_pid=99, mesh_proxies=["envoy"]) == MainProcesses(
        12, frozenset({12}), True)


def test_zombies_are_exited(tmp_path: Path) -> None:
    table = fake_proc(tmp_path, {30: (0, "Z", ""), 31: (0, "S", "x")})
    assert (table.alive(30), table.alive(31), table.alive(32)) == (False, True, False)


def waiter(table: ProcFS, marker: Path, *, timeout: float = 0.0, wait_all: bool = True) -> Waiter:
    return Waiter(table, marker, 0.01, timeout, wait_all, Waker(), ("envoy",), 50, time.monotonic)


def test_wait_all_keeps_waiting_for_other_roots_then_reports_completed(tmp_path: Path) -> None:
    markers = tmp_path / "katib"
    markers.mkdir()
    (markers / "30.pid").write_text("completed\n")
    table = fake_proc(tmp_path / "proc", {40: (0, "S", "logger")})
    procs = MainProcesses(30, frozenset({30, 40}), True)
    timed = waiter(table, markers, timeout=0.2)._wait(procs, time.monotonic() + 0.2)
    assert timed.outcome is Outcome.TIMED_OUT
    assert waiter(table, markers, wait_all=False)._wait(procs, None).outcome is Outcome.COMPLETED
    (tmp_path / "proc" / "40" / "stat").write_text("40 (logger) Z 0 1 1\n")
    result = waiter(table, markers)._wait(procs, None)
    assert (result.outcome, result.main_pid) == (Outcome.COMPLETED, 30)


@pytest.mark.parametrize(("content", "outcome"), [
    (None, Outcome.FAILED), ("early-stopped", Outcome.EARLY_STOPPED), ("garbage", Outcome.FAILED)])
def test_marker_contents_decide_the_outcome(tmp_path: Path, content: str | None, outcome: Outcome) -> None:
    if content is not None:
        (tmp_path / "30.pid").write_text(content)
    procs = MainProcesses(30, frozenset({30, 40}), True)
    table = fake_proc(tmp_path / "proc", {40: (0, "S", "logger")})
    # A failed main process ends the wait at once, even with other roots still running.
    result = waiter(table, tmp_path, wait_all=outcome is Outcome.FAILED)._wait(procs, None)
    assert result.outcome is outcome
    assert "30.pid" in result.detail


def spawn(marker: Path, body: str) -> subprocess.Popen[bytes]:
    command = f"{body} && echo completed > {marker}/$$.pid"
    return subprocess.Popen(["sh", "-c", command], start_new_session=True)


def test_real_training_completes(tmp_path: Path) -> None:
    proc = spawn(tmp_path, f"{sys.executable} -c 'import time; time.sleep(0.3)'")
    start = time.monotonic()
    result = wait_for_training(tmp_path, poll_interval=5.0, timeout=20.0)
    proc.wait(timeout=10)
    assert (result.outcome, result.main_pid) == (Outcome.COMPLETED, proc.pid)
    # The pidfd wakes us at exit: much sooner than the 5 s poll interval.
    assert time.monotonic() - start < 4.0


def test_real_training_fails(tmp_path: Path) -> None:
    proc = spawn(tmp_path, "sleep 0.2; exit 3")
    result = wait_for_training(tmp_path, poll_interval=0.05, timeout=20.0)
    assert proc.wait(timeout=10) == 3
    assert result.outcome is Outcome.FAILED
    assert f"{proc.pid}.pid" in result.detail


def test_training_that_ended_before_we_started(tmp_path: Path) -> None:
    spawn(tmp_path, "true").wait(timeout=10)
    start = time.monotonic()
    result = wait_for_training(tmp_path, poll_interval=5.0)
    assert result.outcome is Outcome.COMPLETED and "already" in result.detail
    assert time.monotonic() - start < 4.0


def test_nothing_to_find_times_out(tmp_path: Path) -> None:
    result = wait_for_training(tmp_path, poll_interval=0.05, timeout=0.2)
    assert result.outcome is Outcome.TIMED_OUT and str(tmp_path) in result.detail


def test_wake_interrupts_a_running_wait(tmp_path: Path) -> None:
    proc = spawn(tmp_path, "sleep 30")
    waker = Waker()
    timer = threading.Timer(0.2, waker.wake)
    timer.start()
    try:
        result = wait_for_training(tmp_path, poll_interval=10.0, waker=waker, timeout=20.0)
        assert (result.outcome, result.main_pid) == (Outcome.INTERRUPTED, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        waker.close()


def test_a_training_that_failed_before_we_looked_is_seen_by_its_output(tmp_path: Path) -> None:
    log = tmp_path / "metrics.log"
    spawn(tmp_path, f"echo epoch=1 > {log}; exit 2").wait(timeout=10)
    result = wait_for_training(tmp_path, poll_interval=5.0, timeout=20.0, evidence=output_evidence(log))
    assert result.outcome is Outcome.FAILED and str(log) in result.detail
    # Without any output the training may simply not have started yet: keep waiting (here: time out).
    empty = tmp_path / "events"
    empty.mkdir()
    waiting = wait_for_training(empty, poll_interval=0.05, timeout=0.2, evidence=output_evidence(empty))
    assert waiting.outcome is Outcome.TIMED_OUT


def test_a_fork_of_the_wrapper_is_never_the_main_process(tmp_path: Path) -> None:
    # 901 is the wrapper; 905 is its fork before exec (same command line); 907 a fork whose parent (a
    # subshell) already exited, reparented to init, younger than the wrapper.
    wrapper = "sh\0-c\0python t.py; echo completed > /tmp/x/$$.pid"
    table = fake_proc(tmp_path, {1: (0, "S", "/sbin/init"), 900: (1, "S", "bash"), 901: (900, "S", wrapper),
                                 903: (901, "S", "python\0t.py"), 905: (901, "S", wrapper), 907: (1, "S", wrapper)})
    for pid, start in ((901, 100), (907, 250)):  # field 22 of stat: the start time in clock ticks
        (tmp_path / str(pid) / "stat").write_text(
            f"{pid} (sh) S {900 if pid == 901 else 1} " + " ".join(["0"] * 17) + f" {start} 0\n")
    assert find_main_processes(table, Path("/tmp/x"), self_pid=5) == MainProcesses(901, frozenset({901}), False)
    pod = fake_proc(tmp_path / "pod", {1: (0, "S", "/pause"), 30: (0, "S", wrapper), 31: (30, "S", wrapper)})
    assert find_main_processes(pod, Path("/tmp/x"), self_pid=50) == MainProcesses(30, frozenset({30}), True)


def forking_wrapper(marker: Path, stop: Path) -> subprocess.Popen[bytes]:
    """The injector's wrapper around `true`, preceded by a loop that forks subshells and commands as fast as
    it can: each fork carries the wrapper's command line (the marker) while it lives. The subshells count a
    little so that most scans of /proc meet one (a real wrapper's forks live for less, the race is the same)."""
    _, args = wrap_command(["true"], WrapSpec(marker_dir=str(marker), metrics_file=str(marker / "metrics.log"),
                                              early_stopping=True))
    script = kubelet_expand(args[0], {})
    busy = "( n=0; while [ $n -lt 2000 ]; do n=$((n+1)); done )"  # a fork that lives a few ms
    loop = f"while [ ! -e {stop} ]; do {busy} & {busy}; /bin/true; wait; done; "
    return subprocess.Popen(["sh", "-c", loop + script, *args[1:]], start_new_session=True)


def test_forks_racing_the_scan_never_take_the_wrappers_place(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    proc = forking_wrapper(tmp_path, stop)
    needle = f"echo completed > {tmp_path}/"
    table = ProcFS()
    results: list[WaitResult] = []
    waiting = threading.Thread(target=lambda: results.append(
        wait_for_training(tmp_path, poll_interval=0.01, timeout=60.0)))
    waiting.start()  # it finds the wrapper while the forks race (the scans below take a while)
    try:
        forks_seen = 0
        deadline = time.monotonic() + 60
        scans = 0
        while (scans < 50 or forks_seen < 10) and time.monotonic() < deadline:
            found = find_main_processes(table, tmp_path, self_pid=os.getpid())
            assert found is not None and found.main == proc.pid, f"scan {scans} took {found}"
            scans += 1
            # The race really ran: this scan (or the one just made) saw a fork carrying the marker.
            forks_seen += any(p.pid != proc.pid and needle in p.cmdline for p in table.processes())
        assert forks_seen >= 10, f"only {forks_seen} of {scans} scans saw a fork of the wrapper"
        stop.touch()
        waiting.join(60)
        assert [(r.outcome, r.main_pid) for r in results] == [(Outcome.COMPLETED, proc.pid)], results
        assert proc.wait(timeout=30) == 0
    finally:
        stop.touch()
        waiting.join(60)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_wait_follows_the_wrapper_while_it_forks(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    proc = forking_wrapper(tmp_path, stop)
    try:
        outcomes = []
        for _ in range(5):  # each wait starts while forks come and go; it must end on the wrapper's marker
            waker = Waker()
            timer = threading.Timer(0.2, waker.wake)
            timer.start()
            result = wait_for_training(tmp_path, poll_interval=0.01, waker=waker, timeout=30.0)
            timer.join()
            waker.close()
            outcomes.append((result.outcome, result.main_pid))
        assert outcomes == [(Outcome.INTERRUPTED, proc.pid)] * 5
    finally:
        stop.touch()
        proc.wait(timeout=30)
