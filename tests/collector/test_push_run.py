"""`katib-metrics run` with push-mode training: the script's own reports land in the local trial and its table."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log

ROOT = Path(__file__).resolve().parents[2]

# Training code written for Katib's Push collector: it prints no metric, it reports them.
PUSH_SCRIPT = textwrap.dedent("""
    import os
    from katib_metrics import MetricsReporter, report_metrics
    assert os.environ["KATIB_DB_MANAGER_ADDRESS"], "run names a db-manager"
    with MetricsReporter() as steps:
        for epoch in range(3):
            for step in range(100):
                steps.report({"loss": 1 / (epoch * 100 + step + 1)})
            report_metrics({"accuracy": 0.5 + epoch / 10})
            print(f"epoch {epoch} done", flush=True)
""")


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train_push.py"
    script.write_text(PUSH_SCRIPT)
    return subprocess.run([sys.executable, "-m", "katib_metrics", "run", *args, "-m", "accuracy", "-m", "loss",
                           "--objective-type", "maximize", "--", sys.executable, str(script)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=90)


def table(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.startswith(("accuracy", "loss"))}


def test_a_push_mode_script_runs_unchanged_and_its_values_land_in_the_local_trial(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    done = run(tmp_path, "--db", str(db), "--trial", "push-1")
    assert done.returncode == 0, done.stderr
    assert "epoch 2 done" in done.stdout
    rows = table(done.stdout)
    assert rows["accuracy"] == ["max", "0.7", "0.5", "0.7", "0.7", "3"]  # not `unavailable`: it was pushed
    assert rows["loss"][-1] == "300"
    assert "objective accuracy = 0.7" in done.stdout
    assert f"trial push-1: 303 rows stored in {db}" in done.stdout
    server = serve("127.0.0.1:0", db)
    try:
        stored = get_observation_log(server.address, "push-1")
    finally:
        server.stop(grace=1)
    assert sorted({row.name for row in stored}) == ["accuracy", "loss"]
    assert len(stored) == 303 and "unavailable" not in {row.value for row in stored}


def test_with_a_db_manager_the_script_reports_to_it(tmp_path: Path) -> None:
    server = serve("127.0.0.1:0", tmp_path / "remote.db")
    try:
        done = run(tmp_path, "--db-manager", server.address, "--trial", "push-2", "--db", str(tmp_path / "l.db"))
        assert done.returncode == 0, done.stderr
        assert table(done.stdout)["accuracy"][-1] == "3"
        assert len(get_observation_log(server.address, "push-2", "accuracy")) == 3
    finally:
        server.stop(grace=1)
