"""`katib-metrics run` ends with the command, not with processes it left running that hold its output open.

Every command runs in a real `sh`. Background processes write their pid to a file so that each test can
stop what is still running at its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib_metrics.collector.proctable import pipe_holders
from katib_metrics.collector.sources import pipe
from katib_metrics.collector.sources.pipe import ProcessOutput

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """A file the background processes append their pid to; they are killed after the test."""
    path = tmp_path / "pids"
    path.touch()
    yield path
    for pid in map(int, path.read_text().split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run(tmp_path: Path, script: str, *metrics: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "katib_metrics", "run", "--db", str(tmp_path / "obs.db"),
                           "-m", ";".join(metrics), "--", "sh", "-c", script],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


def table(done: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()
            if line.split()[:1] and line.split()[0] in ("loss", "late", "step")}


def test_a_background_process_holding_the_output_does_not_keep_run_waiting(tmp_path: Path, pids: Path) -> None:
    done, seconds = run(tmp_path, f"sleep 60 & echo $! >> {pids}; echo loss=0.25", "loss")
    assert done.returncode == 0, done.stderr
    assert seconds < 10, f"run took {seconds:.1f} s: it waited for the background sleep"
    assert table(done)["loss"] == ["latest", "0.25", "0.25", "0.25", "0.25", "1"]
    pid = pids.read_text().split()[0]
    assert f"process(es) it left running still hold its output open: {pid} (sleep)" in done.stderr


def test_what_a_background_process_writes_just_after_the_command_ended_is_still_read(tmp_path: Path,
                                                                                       pids: Path) -> None:
    done, _ = run(tmp_path, "(sleep 0.3; echo late=7) & echo loss=1", "loss", "late")
    assert done.returncode == 0, done.stderr
    assert table(done)["late"][1] == "7" and "left running" not in done.stderr  # its end of file came in time


def test_the_commands_last_output_is_never_cut_however_far_behind_the_parser_is(tmp_path: Path,
                                                                                 pids: Path) -> None:
    """10 MB of metric lines written at once, more than the pipe and the queue hold: the
    reading stops after the exit only once every byte the command wrote is taken."""
    lines = 200_000
    log = tmp_path / "train.log"
    log.write_text("".join(f"step={i} loss=0.5 pad=0123456789\n" for i in range(lines)))
    script = f"sleep 60 & echo $! >> {pids}; cat {log}"  # written at once: the parser is seconds behind
    done, _ = run(tmp_path, script, "step")
    assert done.returncode == 0, done.stderr
    assert table(done)["step"] == ["latest", str(lines - 1), "0", str(lines - 1), str(lines - 1), str(lines)]


def test_a_background_process_that_never_stops_writing_does_not_keep_run_reading(tmp_path: Path,
                                                                                 pids: Path) -> None:
    script = (f"while :; do echo 'progress: no metric here'; sleep 0.01; done & echo $! >> {pids}; "
              "sleep 0.5; echo loss=1; exit 4")
    done, seconds = run(tmp_path, script, "loss")
    assert done.returncode == 4 and seconds < 15, (done.returncode, seconds)
    assert "left running still hold its output open" in done.stderr
    assert table(done)["loss"] == ["latest", "1", "1", "1", "1", "1"]
    assert done.stdout.count("progress: no metric here\n") > 10  # shown while the command ran


def test_pipe_holders_names_the_other_processes_holding_a_pipe() -> None:
    read_end, write_end = os.pipe()
    holder = subprocess.Popen(["sleep", "30"], stdout=write_end)
    try:
        found = pipe_holders(read_end)
        assert [(info.pid, info.name) for info in found] == [(holder.pid, "sleep")]  # not this process
    finally:
        holder.kill()
        holder.wait()
        os.close(read_end)
        os.close(write_end)
    assert pipe_holders(os.pipe()[0]) == []


def test_the_pipe_is_read_to_what_it_held_at_the_exit_even_when_the_queue_was_full(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader is blocked on a full queue when the grace period ends: it still takes the pipe's bytes."""
    monkeypatch.setattr(pipe, "READ_SIZE", 4096)
    read_end, write_end = os.pipe()
    leftover = subprocess.Popen(["sleep", "30"], stdout=write_end)
    lines = [f"step={i:05} loss=0.5\n".encode() for i in range(3000)]  # 59 KiB: the pipe holds it all
    os.write(write_end, b"".join(lines))  # the command's whole output, then it exits
    os.close(write_end)
    output = ProcessOutput([(os.fdopen(read_end, "rb", buffering=0), None)], max_queued=1024)
    try:
        output.command_exited(grace=0.05)
        time.sleep(0.5)  # the grace period ends while the reader waits for room in the queue
        taken, done = [], False
        while not done:
            done = output.done  # checked before the read: nothing is queued after it turns true
            taken.append(output.read())
            output.wait(0.05)
        assert b"".join(taken).splitlines(keepends=True) == lines
        assert output.left_open == [f"{leftover.pid} (sleep)"]
    finally:
        leftover.kill()
        leftover.wait()
        output.close()


def test_closing_twice_closes_the_wake_pipe_once() -> None:
    read_end, write_end = os.pipe()
    output = ProcessOutput([(os.fdopen(read_end, "rb", buffering=0), None)])
    os.close(write_end)
    output.join(5)
    output.close()
    reused = os.open(os.devnull, os.O_RDONLY)  # may take the number of a descriptor closed above
    try:
        output.close()
        output.command_exited()
        os.fstat(reused)  # still open: a second close did not close someone else's descriptor
    finally:
        os.close(reused)
