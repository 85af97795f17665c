"""`katib-metrics check` golden cases: exact text and JSON outputs and exit statuses (see tests/check_golden)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from katib_metrics.parsers.check_cli import main

CASES = Path(__file__).resolve().parents[1] / "check_golden"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "experiment.yaml").exists())


def check(case: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    log = ["log"] if (case / "log").exists() else []
    return subprocess.run([sys.executable, "-m", "katib_metrics", "check", "experiment.yaml", *log, *extra],
                          cwd=case, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", NAMES)
def test_check_output_is_the_golden_one(name: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES / name
    monkeypatch.chdir(case)  # in-process: the same code the console script runs, without a start-up per case
    log = ["log"] if (case / "log").exists() else []
    exit_status = int((case / "exit").read_text())
    assert main(["experiment.yaml", *log]) == exit_status
    text = capsys.readouterr()
    assert main(["experiment.yaml", *log, "--output", "json"]) == exit_status
    data = capsys.readouterr()
    assert text.out == (case / "expected.txt").read_text(encoding="utf-8")
    assert data.out == (case / "expected.json").read_text(encoding="utf-8")
    assert text.err == "" and data.err == ""


def test_the_console_script_gives_the_same(tmp_path: Path) -> None:
    case = CASES / "keras_near_miss"
    done = check(case)
    assert done.returncode == 1 and done.stdout == (case / "expected.txt").read_text(encoding="utf-8")


def test_there_are_cases_for_each_outcome() -> None:
    exits = {int((CASES / name / "exit").read_text()) for name in NAMES}
    assert exits == {0, 1} and len(NAMES) >= 8


if __name__ == "__main__":  # regenerate: python tests/experiments/test_check_golden.py CASE...
    for name in sys.argv[1:] or NAMES:
        folder = CASES / name
        plain, as_json = check(folder), check(folder, "--output", "json")
        (folder / "expected.txt").write_text(plain.stdout, encoding="utf-8")
        (folder / "expected.json").write_text(as_json.stdout, encoding="utf-8")
        (folder / "exit").write_text(f"{plain.returncode}\n", encoding="utf-8")
