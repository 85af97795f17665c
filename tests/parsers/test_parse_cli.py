"""`katib-metrics parse` as users run it: options, outputs, exit codes (DESIGN "Commands")."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from katib_metrics.parsers.cli import main

LOG = "2024-01-01T00:00:00Z epoch=1 loss=0.5 accuracy=0.7\n2024-01-01T00:00:01Z epoch=2 loss=0.4 accuracy=0.8\n"


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", *args], input=stdin.decode(),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture()
def log(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "train.log"
    path.write_text(LOG)
    return path


def test_table_output(log: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-m", "accuracy;loss", "--objective-type", "maximize", str(log)]) == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["METRIC", "STRATEGY", "VALUE", "MIN", "MAX", "LATEST", "COUNT"]
    assert rows[1] == ["accuracy", "max", "0.8", "0.7", "0.8", "0.8", "2"]
    assert rows[2] == ["loss", "max", "0.5", "0.4", "0.5", "0.4", "2"]
    assert "2 lines/records read, 4 values recorded" in err


def test_json_output_schema(log: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-m", "loss", "-m", "accuracy", "--strategy", "accuracy=max", "--output", "json", str(log)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"metric_logs", "observation", "diagnosis"}
    assert doc["diagnosis"] == []
    assert doc["metric_logs"][0] == {"time_stamp": "2024-01-01T00:00:00Z", "metric": {"name": "loss", "value": "0.5"}}
    assert [m["name"] for m in doc["observation"]["metrics"]] == ["loss", "accuracy"]
    assert doc["observation"]["metrics"][1] == {"name": "accuracy", "min": "0.7", "max": "0.8", "latest": "0.8",
                                                "strategy": "max", "value": "0.8"}


def test_objective_unavailable_is_success(log: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-m", "f1", "-m", "loss", "--output", "json", str(log)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metric_logs"][-1] == {"time_stamp": "0001-01-01T00:00:00Z",
                                      "metric": {"name": "f1", "value": "unavailable"}}
    assert doc["observation"]["metrics"][0]["latest"] == "unavailable"
    assert len(doc["metric_logs"]) == 3


def test_stdin_and_version() -> None:
    result = run_cli("parse", "-m", "loss", "--output", "json", "-", stdin=LOG.encode())
    assert result.returncode == 0, result.stderr
    assert [row["metric"]["value"] for row in json.loads(result.stdout)["metric_logs"]] == ["0.5", "0.4"]
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("katib-metrics ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["-f", "(x"], "invalid metrics filter `(x`"),
        (["-f", r"(\w+)"], "two are needed"),
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--strategy", "loss=best"], "--strategy 'loss=best'"),
        (["--regex-timeout", "soon"], "--regex-timeout"),
        (["--format", "json", "-f", "(a)(b)"], "-f applies to --format text only"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(log: pathlib.Path, args: list[str], message: str) -> None:
    result = run_cli("parse", *args, str(log))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_directory_are_usage_errors(tmp_path: pathlib.Path) -> None:
    missing = run_cli("parse", str(tmp_path / "nope.log"))
    assert missing.returncode == 2 and "nope.log: no such file or directory" in missing.stderr
    directory = run_cli("parse", "--format", "text", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr


@pytest.mark.skipif(sys.platform != "linux" or not hasattr(__import__("os"), "geteuid")
                    or __import__("os").geteuid() == 0, reason="root can read any file")
def test_unreadable_file_exits_1(log: pathlib.Path) -> None:
    log.chmod(0)
    assert run_cli("parse", str(log)).returncode == 1


def test_read_error_exits_1(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # /proc/self/mem exists but reading it from offset 0 fails with EIO.
    assert main(["--format", "json", "/proc/self/mem"]) == 1
    assert "cannot read /proc/self/mem" in capsys.readouterr().err


def test_json_warnings_name_line_numbers(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"loss": 1}\nprint output\n{"loss": 2}\n')
    assert main(["--format", "json", "-m", "loss", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:2: skipped (invalid_json)" in err
    assert "1 skipped (invalid_json: 1)" in err


def test_pathological_regex_finishes_and_reports_skips(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.log"
    path.write_text("a" * 60 + "\n" + "a 1\n" + "a" * 60 + "\n")
    result = run_cli("parse", "-f", r"((?:a|a)+) ?(\d)", "--regex-timeout", "200ms", "--output", "json", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 skipped (regex_timeout: 2)" in result.stderr
    assert json.loads(result.stdout)["metric_logs"] == [
        {"time_stamp": "0001-01-01T00:00:00Z", "metric": {"name": "a", "value": "1"}}]
