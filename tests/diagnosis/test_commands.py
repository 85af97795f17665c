"""The diagnosis and the input-level warnings where users meet them: parse (file, stdin), run, the sidecar's log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.parsers.input_checks import input_warnings
from katib_metrics.parsers.model import FileFormat

ROOT = Path(__file__).resolve().parents[2]
KERAS = ROOT / "examples" / "logs" / "keras.log"
FILTER_HINT = "try: -f '([\\w-]+)\\s*[:=]\\s*"


def katib(*args: str, stdin: bytes | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", *args], cwd=cwd, capture_output=True, text=True,
                          input=None if stdin is None else stdin.decode(), timeout=60)


@pytest.fixture
def db(tmp_path: Path) -> RunningServer:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server  # type: ignore[misc]
    server.stop(grace=1)


def test_parse_says_why_after_the_table_and_keeps_exit_0() -> None:
    done = katib("parse", str(KERAS), "-m", "val_accuracy")
    assert done.returncode == 0
    assert done.stdout.startswith("METRIC")
    assert "diagnosis: val_accuracy: 'val_accuracy' appears on 3 lines" in done.stderr
    assert "line 2: '1875/1875 - 3s - loss: 0.2980" in done.stderr
    assert FILTER_HINT in done.stderr and "collects 3 values of val_accuracy" in done.stderr


def test_standard_input_is_diagnosed_from_what_was_read() -> None:
    done = katib("parse", "-", "-m", "val_loss", "--output", "json", stdin=KERAS.read_bytes())
    [found] = json.loads(done.stdout)["diagnosis"]
    assert found["cause"] == "filter_mismatch" and "of standard input" in found["evidence"]
    assert found["suggestion"]["values"] == 3


def test_run_diagnoses_the_commands_output_in_text_and_json(tmp_path: Path) -> None:
    command = ["--", sys.executable, "-c", f"print(open({str(KERAS)!r}).read())"]
    text = katib("run", "--db", str(tmp_path / "o.db"), "-m", "val_accuracy", *command)
    assert text.returncode == 0, text.stderr
    assert "katib-metrics run: diagnosis: val_accuracy:" in text.stderr and "of the command's output" in text.stderr
    as_json = katib("run", "--db", str(tmp_path / "o.db"), "--append", "--trial", "t", "--output", "json",
                    "-m", "val_accuracy", *command)
    [found] = json.loads(as_json.stdout)["diagnosis"]
    assert found["metric"] == "val_accuracy" and found["suggestion"]["values"] == 3


def test_run_says_when_its_metrics_file_never_appeared(tmp_path: Path) -> None:
    missing = tmp_path / "out" / "metrics.log"
    done = katib("run", "--db", str(tmp_path / "o.db"), "-m", "accuracy", "--path", str(missing), "--", "true")
    assert f"warning: {missing} never appeared" in done.stderr
    assert "[nothing_read]" in done.stderr


def test_an_empty_metric_name_is_said_by_parse_and_run(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_text("accuracy=0.5\n")
    parsed = katib("parse", str(log), "-m", "")
    assert "warning: -m '' names no metric and is ignored; without a name every metric found is reported" in (
        parsed.stderr)
    ran = katib("run", "--db", str(tmp_path / "o.db"), "-m", "", "--", "echo", "accuracy=0.5")
    assert "warning: -m '' names no metric" in ran.stderr and ran.returncode == 0


def test_a_binary_file_and_an_event_file_given_as_a_file(tmp_path: Path) -> None:
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x00\x01\x02\xff\xfe" * 100)
    assert "looks binary (NUL bytes at its start)" in katib("parse", str(binary), "-m", "accuracy").stderr
    event = tmp_path / "events.out.tfevents.1.host"
    event.write_bytes(b"\x18\x00\x00\x00\x00\x00\x00\x00\xa3\x7fK\x22")
    said = katib("parse", str(event), "-m", "accuracy").stderr
    assert f"{event} is a TensorFlow event file: give its directory" in said


def test_a_directory_without_event_files(tmp_path: Path) -> None:
    (tmp_path / "train.log").write_text("accuracy=0.5\n")
    done = katib("parse", str(tmp_path), "-m", "accuracy")
    assert f"warning: {tmp_path} holds no TensorFlow event files" in done.stderr
    assert done.returncode == 0


def test_json_lines_read_as_text_are_named_only_when_nothing_was_found() -> None:
    head = b'{"step": 1, "note": "warming up"}\n{"step": 2, "note": "done"}\n'
    assert input_warnings("metrics.jsonl", FileFormat.TEXT, found_any=False, head=head) == [
        "metrics.jsonl looks like JSON lines, read here as text: use --format json"]
    assert input_warnings("m.log", FileFormat.TEXT, found_any=False, head=head) == [
        "m.log looks like JSON lines, read here as text: use --format json"]
    assert input_warnings("metrics.jsonl", FileFormat.TEXT, found_any=True, head=head) == []
    assert input_warnings("metrics.jsonl", FileFormat.JSON, found_any=False, head=head) == []


def test_the_sidecar_logs_the_diagnosis_at_exit(tmp_path: Path, db: RunningServer) -> None:
    log = tmp_path / "metrics.log"
    log.write_bytes(KERAS.read_bytes())
    (tmp_path / "4242.pid").write_text("completed\n")  # the training ended before the sidecar started
    done = katib("collect", "-t", "trial-d", "-m", "val_accuracy;loss", "-s-db", db.address, "-path", str(log),
                 "-format", "TEXT")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "diagnosis:" in line or "try:" in line]
    assert any("diagnosis: val_accuracy: 'val_accuracy' appears on 3 lines" in line for line in lines), done.stderr
    assert any("diagnosis: loss:" in line for line in lines)
    assert any(FILTER_HINT in line for line in lines)
    assert done.stderr.index("Metrics reported") < done.stderr.index("diagnosis:")  # the report comes first
