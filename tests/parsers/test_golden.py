"""Golden cases: input + arguments + expected JSON, run through `katib-metrics parse` (STYLE.md §14)."""

from __future__ import annotations

import json
import pathlib

import pytest

from katib_metrics.parsers.cli import main

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if (path / "expected.json").exists())


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = GOLDEN / case
    args = [line for line in (folder / "args").read_text(encoding="utf-8").splitlines() if line]
    monkeypatch.chdir(folder)  # diagnoses quote the path as given: `input`, the same on every machine
    assert main(["--output", "json", *args, "input"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    assert printed.count("\n") == 1  # exactly one JSON object on one line


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 8
