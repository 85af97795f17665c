"""A metrics path that is not a regular file: a FIFO (with or without a writer) or a symlink to an endless
device. The tail never blocks and never reads forever; the sidecar ends and reports (real processes)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import get_observation_log
from katib_metrics.collector.sources.tail import FileTail

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


def in_thread(call: object, timeout: float = 10) -> object:
    """`call()` in a thread; fails (instead of hanging the test) when it blocks."""
    result: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())  # type: ignore[operator]
        except BaseException as err:  # re-raised in the test's thread
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{call} blocked for {timeout}s"
    if errors:
        raise errors[0]
    return result[0]


def test_a_fifo_without_a_writer_does_not_block_the_tail(tmp_path: Path) -> None:
    fifo = tmp_path / "metrics.log"
    os.mkfifo(fifo)
    tail = FileTail(fifo)
    try:
        assert in_thread(tail.read) == b""
        assert in_thread(tail.flush) == b""
    finally:
        with contextlib.suppress(OSError):  # a tail blocked in open() is released by a writer: no thread left
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        tail.close()


def test_a_fifo_with_a_silent_writer_does_not_block_and_its_lines_come_through(tmp_path: Path) -> None:
    fifo = tmp_path / "metrics.log"
    os.mkfifo(fifo)
    tail = FileTail(fifo)
    assert in_thread(tail.read) == b""
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert in_thread(tail.read) == b""  # open, nothing written yet
        os.write(writer, b"accuracy=0.5\naccuracy=0.6\nloss=")
        assert in_thread(tail.read) == b"accuracy=0.5\naccuracy=0.6\n"
        assert in_thread(tail.read) == b""
        os.write(writer, b"0.25")
    finally:
        os.close(writer)
    assert in_thread(tail.read) == b""
    assert in_thread(tail.flush) == b"loss=0.25"
    tail.close()


def test_a_symlink_to_an_endless_device_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.symlink_to("/dev/zero")
    tail = FileTail(path)
    with pytest.raises(OSError, match="not a regular file"):
        in_thread(tail.read)
    tail.close()


def collect(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", "collect", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def test_the_sidecar_reads_a_fifo_then_ends_when_the_training_closed_it(tmp_path: Path, db: RunningServer) -> None:
    fifo = tmp_path / "metrics.log"
    os.mkfifo(fifo)
    script = (f"import os\nwith open({str(fifo)!r}, 'w') as out:\n"
              "    out.writelines(f'accuracy={i}\\n' for i in range(1000))\n"
              f"open({str(tmp_path / '7.pid')!r}, 'w').write('completed\\n')\n")
    with subprocess.Popen([sys.executable, "-c", script]) as training:
        done = collect("-t", "trial-fifo", "-m", "accuracy", "-s-db", db.address, "-path", str(fifo),
                       "--metrics-port", "0", timeout=60)
        assert training.wait(timeout=30) == 0
    assert done.returncode == 0, done.stderr[-3000:]
    assert [row.value for row in get_observation_log(db.address, "trial-fifo")] == [str(i) for i in range(1000)]


def test_the_sidecar_ends_when_the_metrics_path_is_a_symlink_to_dev_zero(tmp_path: Path, db: RunningServer) -> None:
    path = tmp_path / "metrics.log"
    path.symlink_to("/dev/zero")
    (tmp_path / "7.pid").write_text("completed\n")
    done = collect("-t", "trial-zero", "-m", "accuracy", "-s-db", db.address, "-path", str(path),
                   "--metrics-port", "0", timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not a regular file" in done.stderr
    assert [(row.name, row.value) for row in get_observation_log(db.address, "trial-zero")] == [
        ("accuracy", "unavailable")]


def test_the_sidecar_ends_when_no_one_ever_opened_its_fifo(tmp_path: Path, db: RunningServer) -> None:
    fifo = tmp_path / "metrics.log"
    os.mkfifo(fifo)
    (tmp_path / "7.pid").write_text("completed\n")
    done = collect("-t", "trial-silent", "-m", "accuracy", "-s-db", db.address, "-path", str(fifo),
                   "--metrics-port", "0", timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [row.value for row in get_observation_log(db.address, "trial-silent")] == ["unavailable"]


def test_a_directory_at_the_path_is_named_and_leaks_no_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.mkdir()
    tail = FileTail(path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        with pytest.raises(OSError, match=f"{path} is a directory, not a regular file"):
            tail.read()
    assert len(os.listdir("/proc/self/fd")) == before
    path.rmdir()
    path.write_bytes(b"accuracy=1\n")
    assert tail.read() == b"accuracy=1\n"
    tail.close()
