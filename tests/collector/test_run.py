"""`katib-metrics run` end to end: the example training, live output, the local store, exit statuses."""

from __future__ import annotations

import json
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
    table = done.stdout.splitlines()[-5:]
    assert table[0].split() == ["METRIC", "STRATEGY", "VALUE", "MIN", "MAX", "LATEST", "COUNT"]
    accuracy = printed[-1].split()[2].split("=")[1]
    assert table[1].split()[0] == "accuracy" and table[1].split()[5:] == [accuracy, "4"]
    assert table[3] == f"objective accuracy = {accuracy}, chosen by strategy latest (no --objective-type)"
    assert table[4] == f"trial t1: 8 rows stored in {db}"
    server = serve("127.0.0.1:0", db)
    try:
        assert len(get_observation_log(server.address, "t1", "loss")) == 4
    finally:
        server.stop(grace=1)


def test_exit_status_is_the_commands_and_stderr_is_collected_too(tmp_path: Path) -> None:
    script = "import sys; print('accuracy=0.5'); print('loss=2', file=sys.stderr); sys.exit(3)"
    done = run("-m", "accuracy;loss", "--", sys.executable, "-c", script, db=tmp_path / "obs.db")
    assert done.returncode == 3
    assert "accuracy=0.5" in done.stdout and "loss=2" in done.stdout  # one pipe for both: the order written
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[-5:-2]}
    assert rows["accuracy"] == ["latest", "0.5", "0.5", "0.5", "0.5", "1"]
    assert rows["loss"] == ["latest", "2", "2", "2", "2", "1"]


def test_stdout_and_stderr_lines_keep_the_order_they_were_written(tmp_path: Path) -> None:
    script = ("import sys\nfor i in range(200):\n    s = sys.stderr if i % 2 else sys.stdout\n"
              "    s.write(f'step={i}\\n'); s.flush()")
    done = run("-m", "step", "--", sys.executable, "-c", script, db=tmp_path / "obs.db")
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stdout.splitlines() if line.startswith("step=")]
    assert shown == [f"step={i}" for i in range(200)]


def test_the_table_starts_on_its_own_line_after_an_unterminated_last_line(tmp_path: Path) -> None:
    done = run("-m", "accuracy", "--", "printf", "accuracy: 0.8001 accuracy=0.8", db=tmp_path / "obs.db")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "accuracy: 0.8001 accuracy=0.8"
    assert lines[1].startswith("METRIC ")
    assert lines[-1].endswith("1 row stored in " + str(tmp_path / "obs.db"))  # singular


def test_a_trial_name_used_twice_is_refused_without_append(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    assert run("--trial", "lr-0.3", "-m", "a", "--", "echo", "a=1", db=db).returncode == 0
    again = run("--trial", "lr-0.3", "-m", "a", "--", "echo", "a=2", db=db)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "trial 'lr-0.3' already has 1 row in" in again.stderr and "--append" in again.stderr
    assert "a=2" not in again.stdout  # refused before running anything
    appended = run("--trial", "lr-0.3", "--append", "-m", "a", "--", "echo", "a=2", db=db)
    assert appended.returncode == 0, appended.stderr
    assert appended.stdout.splitlines()[-1] == f"trial lr-0.3: 1 row stored in {db}"
    server = serve("127.0.0.1:0", db)
    try:
        assert [row.value for row in get_observation_log(server.address, "lr-0.3", "a")] == ["1", "2"]
    finally:
        server.stop(grace=1)


def test_db_in_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    done = run("-m", "a", "--", "echo", "a=1", db=tmp_path / "typo" / "obs.db")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"directory {tmp_path / 'typo'} does not exist" in done.stderr
    assert not (tmp_path / "typo").exists() and "a=1" not in done.stdout


def test_output_json_is_parses_document(tmp_path: Path) -> None:
    lines = "accuracy=0.5 loss=2\naccuracy=0.7 loss=1e-3\nloss=abc\n"
    (tmp_path / "train.log").write_text(lines)
    done = run("--output", "json", "--trial", "j", "-m", "accuracy", "-m", "loss", "-m", "missing",
               "--objective-type", "minimize", "--", "cat", str(tmp_path / "train.log"), db=tmp_path / "obs.db")
    assert done.returncode == 0, done.stderr
    ours = json.loads(done.stdout)  # stdout is the document alone; the command's output went to stderr
    assert "accuracy=0.5" in done.stderr and "2 rows stored" not in done.stdout
    parsed = subprocess.run([sys.executable, "-m", "katib_metrics", "parse", str(tmp_path / "train.log"),
                             "-m", "accuracy;loss;missing", "--objective-type", "minimize", "--output", "json"],
                            capture_output=True, text=True, timeout=60, check=True)
    theirs = json.loads(parsed.stdout)
    assert ours.pop("trial_name") == "j" and ours.keys() <= theirs.keys()
    assert ours["observation"] == theirs["observation"]
    assert [log["metric"] for log in ours["metric_logs"]] == [log["metric"] for log in theirs["metric_logs"]]


def test_reporting_failure_after_success_exits_1_keeps_the_rows_and_they_can_be_resent(tmp_path: Path) -> None:
    db = tmp_path / "obs.db"
    done = run("--trial", "far", "-m", "a", "--db-manager", "127.0.0.1:1", "--report-timeout", "1s", "--",
               sys.executable, "-c", "print('a=1'); print('a=2')", db=db)
    assert done.returncode == 1
    assert "UNAVAILABLE" in done.stderr and "Traceback" not in done.stderr
    notices = [line for line in done.stderr.splitlines() if "retrying until" in line]
    assert len(notices) == 1 and "db-manager 127.0.0.1:1" in notices[0], done.stderr  # said once, where
    assert f"2 rows of trial far kept in {db}" in done.stderr
    resend = done.stderr.split("send them again with: ")[1].splitlines()[0]
    assert resend == f"katib-metrics show far --db {db} --resend"
    listed = subprocess.run([sys.executable, "-m", "katib_metrics", "trials", "--db", str(db)],
                            capture_output=True, text=True, timeout=60)
    assert "did not reach its db-manager" in listed.stderr
    server = serve("127.0.0.1:0", tmp_path / "remote.db")
    try:
        sent = subprocess.run([sys.executable, "-m", "katib_metrics", *resend.split()[1:], server.address],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout == f"trial far: 2 rows sent to db-manager {server.address}\n"
        assert [row.value for row in get_observation_log(server.address, "far", "a")] == ["1", "2"]
    finally:
        server.stop(grace=1)


def test_metrics_from_a_file_and_usage_errors(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    done = run("-m", "loss", "--path", str(log), "--", "sh", "-c", f"echo loss=0.25 > {log}",
               db=tmp_path / "obs.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-3].split() == ["loss", "latest", "0.25", "0.25", "0.25", "0.25", "1"]
    missing = run("-m", "loss", db=tmp_path / "obs.db")
    assert missing.returncode == 2 and "no command" in missing.stderr
    bad = run("-f", "(x", "--", "true", db=tmp_path / "obs.db")
    assert bad.returncode == 2 and "(x" in bad.stderr and "Traceback" not in bad.stderr
    absent = run("--", "/nonexistent/cmd", db=tmp_path / "obs.db")
    assert absent.returncode == 127 and "/nonexistent/cmd" in absent.stderr


def test_output_json_keeps_stdout_for_the_json_when_metrics_come_from_a_file(tmp_path: Path) -> None:
    metrics = tmp_path / "m.log"
    metrics.write_text("loss=0.5\n")
    done = run("--trial", "file-json", "--path", str(metrics), "-m", "loss", "--output", "json", "--",
               "echo", "the training's own output", db=tmp_path / "obs.db")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["observation"]["metrics"][0]["latest"] == "0.5"
    assert "the training's own output" in done.stderr  # still shown, on stderr
