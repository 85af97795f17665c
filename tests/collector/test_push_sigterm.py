"""SIGTERM (early stopping, a pod being deleted) does not drop what MetricsReporter has queued: it is stored
within `TERM_FLUSH`, then the process ends by the signal as before. A program with its own handler keeps it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log
from tests.collector.grpc_doubles import free_port

SCRIPT = """
import os, signal, sys, time
from katib_metrics import MetricsReporter
if sys.argv[2] == "own":
    signal.signal(signal.SIGTERM, lambda *_: (print("own handler", flush=True), os._exit(7)))
reporter = MetricsReporter(sys.argv[1])
for step in range(int(sys.argv[3])):
    reporter.report({"loss": 1 / (step + 1), "step": step})
os.kill(os.getpid(), signal.SIGTERM)  # what early stopping sends, right after the last report
time.sleep(30)
print("not reached", flush=True)
"""


def run(tmp_path: Path, address: str, mode: str, steps: int) -> tuple[subprocess.CompletedProcess[str], float]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), address, mode, str(steps)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "KATIB_TRIAL_NAME": "stopped"})
    return done, time.monotonic() - started


def test_sigterm_stores_the_queue_then_ends_the_process_by_the_signal(tmp_path: Path) -> None:
    server = serve("127.0.0.1:0", tmp_path / "obs.db")
    try:
        done, _ = run(tmp_path, server.address, "default", 20_000)
        rows = get_observation_log(server.address, "stopped", "step")
    finally:
        server.stop(grace=None)
    assert done.returncode == -signal.SIGTERM and "not reached" not in done.stdout, done.stderr
    assert [row.value for row in rows] == [str(step) for step in range(20_000)]


def test_sigterm_with_an_unreachable_db_manager_names_the_values_and_ends_within_the_bound(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    done, took = run(tmp_path, address, "default", 5)
    assert done.returncode == -signal.SIGTERM
    assert "10 metric values of trial stopped (loss, step) were NOT reported" in done.stderr
    assert "not stored within 3 s of closing" in done.stderr
    assert took < 15, f"{took:.1f} s from SIGTERM to the end"


def test_a_program_with_its_own_sigterm_handler_keeps_it(tmp_path: Path) -> None:
    done, _ = run(tmp_path, f"127.0.0.1:{free_port()}", "own", 1)
    assert done.returncode == 7 and done.stdout == "own handler\n"
