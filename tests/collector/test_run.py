"""`katib-metrics run` end to end: the example training, live output, the local store, exit statuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", "run", "--db", str(db), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_readme_command_with_the_example_script(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    done = run("--trial", "t1", "-m", "accuracy", "-m", "loss", "--", sys.executable, "examples/train.py",
               "--epochs", "4", "--seconds", "0.4", db=db)
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stdout.splitlines() if line.startswith("epoch=")]
    assert len(printed) == 4  # the command's own output is shown
    table = done.stdout.splitlines()[-4:]
    assert table[0].split() == ["metric", "min", "max", "latest", "count"]
    accuracy = printed[-1].split()[2].split("=")[1]
    assert table[1].split()[0] == "accuracy" and table[1].split()[3:] == [accuracy, "4"]
    assert table[3] == f"trial t1: 8 rows stored in {db}"
    server = serve("127.0.0.1:0", db)
    try:
        assert len(get_observation_log(server.address, "t1", "loss")) == 4
    finally:
        server.stop(grace=1)


def test_exit_status_is_the_commands_and_stderr_is_collected_too(tmp_path: Path) -> None:
    script = "import sys; print('accuracy=0.5'); print('loss=2', file=sys.stderr); sys.exit(3)"
    done = run("-m", "accuracy;loss", "--", sys.executable, "-c", script, db=tmp_path / "obs.db")
    assert done.returncode == 3
    assert "accuracy=0.5" in done.stdout and "loss=2" in done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[-4:-1]}
    assert rows["accuracy"] == ["0.5", "0.5", "0.5", "1"] and rows["loss"] == ["2", "2", "2", "1"]


def test_reporting_failure_after_success_exits_1(tmp_path: Path) -> None:
    done = run("-m", "a", "--db-manager", "127.0.0.1:1", "--report-timeout", "500ms", "--", sys.executable,
               "-c", "print('a=1')", db=tmp_path / "obs.db")
    assert done.returncode == 1
    assert "UNAVAILABLE" in done.stderr


def test_metrics_from_a_file_and_usage_errors(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    done = run("-m", "loss", "--path", str(log), "--", "sh", "-c", f"echo loss=0.25 > {log}",
               db=tmp_path / "obs.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2].split() == ["loss", "0.25", "0.25", "0.25", "1"]
    missing = run("-m", "loss", db=tmp_path / "obs.db")
    assert missing.returncode == 2 and "no command" in missing.stderr
    bad = run("-f", "(x", "--", "true", db=tmp_path / "obs.db")
    assert bad.returncode == 2 and "(x" in bad.stderr and "Traceback" not in bad.stderr
    absent = run("--", "/nonexistent/cmd", db=tmp_path / "obs.db")
    assert absent.returncode == 127 and "/nonexistent/cmd" in absent.stderr
