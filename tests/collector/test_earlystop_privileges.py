"""Early stopping across users, with the kernel's real permission checks (docs/early-stopping.md).

The sidecar runs as uid 0 with its capabilities cut by `setpriv` (none, or CAP_KILL only) and the
training, inside Katib's own wrapper, as `nobody` or as root: the cases of a collector that is not the
training's user (Katib's webhook injecting our image), of our injector's choice (root with CAP_KILL
only when the training's user is unknown), and of the same user (no capability needed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import get_observation_log
from tests.collector.grpc_doubles import RecordingEarlyStopping, free_port, start_server
from tests.collector.test_earlystop_integration import ROOT, metrics_up, until, wrapped

LINES = 20
NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups "
# Accuracy stalls at 0.30: `accuracy;0.5;less;3` holds at the 3rd line; unstopped, all LINES lines come.
TRAIN = ("sh -c 'i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo \"epoch=$i accuracy=0.30 loss=0.70\"; "
         "sleep 0.05; done; exit {status}'")


def _setpriv_works() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    done = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "true"], capture_output=True)
    return done.returncode == 0


pytestmark = pytest.mark.skipif(not _setpriv_works(), reason="needs root and setpriv able to drop capabilities")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=1)


def trial(tmp: Path, db: str, earlystop: str, *, caps: str, training_user: str, status: int
          ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """(wrapper, sidecar) results of one trial: the sidecar ready first, then the wrapped training."""
    log = tmp / "metrics.log"
    port = free_port()
    sidecar = subprocess.Popen(
        ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all", sys.executable, "-m", "katib_metrics", "collect",
         "-t", "trial-users", "-m", "accuracy;loss", "-o-type", "maximize", "-s-db", db, "-path", str(log),
         "-format", "TEXT", "-p", "100ms", "-stop-rule", "accuracy;0.5;less;3", "-s-earlystop", earlystop,
         "--metrics-port", str(port), "--metrics-address", "127.0.0.1", "--stop-grace", "2s"],
        cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        until(lambda: metrics_up(port) or sidecar.poll() is not None, 30, "the sidecar's /metrics")
        train = training_user + TRAIN.format(lines=LINES, status=status)
        shell = subprocess.run(["sh", "-c", wrapped(train, log, tmp)], text=True, capture_output=True, timeout=60)
        _, err = sidecar.communicate(timeout=60)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
    return shell, subprocess.CompletedProcess(sidecar.args, sidecar.returncode, "", err)


@pytest.mark.parametrize("status", [0, 3], ids=["succeeds", "fails"])
def test_a_training_the_collector_may_not_signal_runs_to_its_end_and_decides_the_trial(
        tmp_path: Path, db: RunningServer, status: int) -> None:
    recorder = RecordingEarlyStopping()
    server, address = start_server(recorder)
    try:
        shell, sidecar = trial(tmp_path, db.address, address, caps="-all", training_user=NOBODY, status=status)
    finally:
        server.stop(grace=None)
    # The collector never fails the trial: it reports everything and exits 0, saying why and how to fix it.
    assert sidecar.returncode == 0, sidecar.stderr
    assert "the training cannot be stopped" in sidecar.stderr and "uid 65534" in sidecar.stderr
    assert "Operation not permitted" in sidecar.stderr and "runAsUser" in sidecar.stderr
    assert "Traceback" not in sidecar.stderr
    assert recorder.calls == 0  # no SetTrialStatus without a delivered signal
    assert len(get_observation_log(db.address, "trial-users", "accuracy")) == LINES
    # No early-stopped marker was ever written: the training's own outcome reaches the container's status.
    assert "Early Stopped" not in shell.stdout
    pid_files = [p.read_text().strip() for p in tmp_path.glob("*.pid")]
    if status == 0:
        assert shell.returncode == 0 and pid_files == ["completed"]
    else:
        assert shell.returncode == 1 and "Training Container was Failed" in shell.stdout and pid_files == []


@pytest.mark.parametrize(("caps", "training_user"), [("-all,+kill", NOBODY), ("-all", "")],
                         ids=["CAP_KILL-other-user", "same-user-no-capability"])
def test_cap_kill_or_the_same_user_is_enough_to_stop_the_training(
        tmp_path: Path, db: RunningServer, caps: str, training_user: str) -> None:
    recorder = RecordingEarlyStopping()
    server, address = start_server(recorder)
    try:
        shell, sidecar = trial(tmp_path, db.address, address, caps=caps, training_user=training_user, status=0)
    finally:
        server.stop(grace=None)
    assert sidecar.returncode == 0, sidecar.stderr
    assert shell.returncode == 0 and "Training Container was Early Stopped" in shell.stdout
    assert recorder.trials == ["trial-users"]
    assert 3 <= len(get_observation_log(db.address, "trial-users", "accuracy")) < LINES
