"""Piped into `head`: `run` goes on collecting and storing with the command's exit status; other commands end
quietly with SIGPIPE's status. Real shell pipelines, real `head`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log
from katib_metrics.collector.sources.pipe import ProcessOutput

ROOT = Path(__file__).resolve().parents[2]
KM = f"{sys.executable} -m katib_metrics"
TRAIN = f"{sys.executable} -c \"[print(f'loss={{i}}', flush=True) for i in range(50_000)]; raise SystemExit(3)\""


def shell(script: str, tmp_path: Path) -> tuple[str, str, int]:
    """The pipeline's stdout and stderr, and the exit status of its first command (written to a file)."""
    done = subprocess.run(["sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr, int((tmp_path / "status").read_text())


def stored(db: Path, trial: str) -> list[str]:
    server = serve("127.0.0.1:0", db)
    try:
        return [log.value for log in get_observation_log(server.address, trial, "loss")]
    finally:
        server.stop(grace=1)


def test_run_piped_into_head_stores_every_row_and_keeps_the_commands_status(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    out, err, status = shell(f"{{ {KM} run --db {db} --trial t1 -m loss -- {TRAIN}; echo $? > {tmp_path}/status; }}"
                             " | head -1", tmp_path)
    assert out == "loss=0\n" and status == 3, err
    assert "reader of its output went away (Broken pipe)" in err and "Traceback" not in err
    assert stored(db, "t1") == [str(i) for i in range(50_000)]


def test_stderr_in_the_same_pipe_goes_quiet_too(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    out, err, status = shell(f"{{ {KM} run --db {db} --trial t2 -m loss -- {TRAIN} 2>&1; echo $? > {tmp_path}/status;"
                             " } | head -1", tmp_path)
    assert out == "loss=0\n" and status == 3 and err == ""
    assert len(stored(db, "t2")) == 50_000


def test_parse_piped_into_head_ends_with_sigpipes_status_and_no_traceback(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"loss={i}\n" for i in range(100_000)))
    out, err, status = shell(f"{{ {KM} parse -m loss --output json {log}; echo $? > {tmp_path}/status; }}"
                             " | head -c 20", tmp_path)
    assert len(out) == 20 and status == 141 and "Traceback" not in err and "Exception" not in err, err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_run_onto_a_full_disk_still_stores_every_row(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    _, err, status = shell(f"{KM} run --db {db} --trial t3 -m loss -- {TRAIN} > /dev/full; echo $? > {tmp_path}/status",
                           tmp_path)
    assert status == 3 and "its output failed (No space left on device)" in err and "Traceback" not in err, err
    assert len(stored(db, "t3")) == 50_000


class FailingTee:
    def write(self, data: bytes) -> int:
        raise RuntimeError("a tee that fails in a way nobody planned for")

    def flush(self) -> None:
        pass


def test_a_failing_tee_never_stops_the_collection() -> None:
    read_end, write_end = os.pipe()
    output = ProcessOutput([(os.fdopen(read_end, "rb", buffering=0), FailingTee())])  # type: ignore[list-item]
    lines = b"".join(f"loss={i}\n".encode() for i in range(10_000))
    writer = threading.Thread(target=lambda: (os.write(write_end, lines), os.close(write_end)))
    writer.start()
    taken, done = [], False
    while not done:
        done = output.done
        taken.append(output.read())
        output.wait(0.05)
    writer.join(5)
    output.close()
    assert b"".join(taken) == lines
