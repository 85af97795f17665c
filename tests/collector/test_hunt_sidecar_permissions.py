"""The metrics file becomes unreadable mid-trial (replaced by a file of mode 000), then readable again: the
sidecar, as root without capabilities (so permissions apply), warns, retries and loses nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import get_observation_log
from tests.collector.test_collect_integration import free_port, training, wait_for_scrape

ROOT = Path(__file__).resolve().parents[2]
SETPRIV = shutil.which("setpriv")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


class Lines:
    """A process's stderr lines as they come, and a wait for one containing a text."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: any(text in line for line in self.lines), timeout), self.lines


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop capabilities")
def test_a_metrics_file_unreadable_for_a_while_loses_nothing(tmp_path: Path, db: RunningServer) -> None:
    assert SETPRIV is not None
    log = tmp_path / "metrics.log"
    log.write_text("accuracy=1\naccuracy=2\naccuracy=3\n")
    release = tmp_path / "release"
    os.mkfifo(release)
    train = training(f"read x < {release}", tmp_path)
    port = free_port()
    sidecar = subprocess.Popen(
        [SETPRIV, "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "katib_metrics", "collect",
         "-t", "trial-perm", "-m", "accuracy", "-s-db", db.address, "-path", str(log), "-format", "TEXT",
         "--metrics-port", str(port), "--metrics-address", "127.0.0.1"],
        cwd=ROOT, text=True, stderr=subprocess.PIPE)
    try:
        err = Lines(sidecar.stderr)
        key = "katib_collector_metric_values_total[('metric', 'accuracy'), ('trial', 'trial-perm')]"
        wait_for_scrape(port, key, 3)
        hidden = tmp_path / "new"
        hidden.write_text("accuracy=4\naccuracy=5\n")
        hidden.chmod(0)
        os.replace(hidden, log)  # a rotation to a file the sidecar may not read
        err.wait_for("Permission denied")
        log.chmod(0o644)
        with log.open("a") as out:
            out.write("accuracy=6\n")
        wait_for_scrape(port, key, 6)
    finally:
        release.write_text("go\n")
        assert train.wait(timeout=30) == 0
        status = sidecar.wait(timeout=60)
    assert status == 0, "".join(err.lines)[-3000:]
    assert [row.value for row in get_observation_log(db.address, "trial-perm")] == [str(i) for i in range(1, 7)]
