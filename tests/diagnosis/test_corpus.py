"""Near-miss logs: each cause of an unavailable metric, and logs that must get no suggestion (golden files)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import sys
from typing import Any

import pytest

from katib_metrics.parsers.cli import main

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
CASES = sorted(path.name for path in CORPUS.iterdir() if (path / "args").exists())
NO_SUGGESTION = {"all_found", "empty_file", "json_nested", "json_no_numbers", "json_string_value", "nan_percent",
                 "prometheus_unrelated", "prose_only", "unrelated_log"}


def parse(folder: pathlib.Path, args: list[str], path: str = "input") -> dict[str, Any]:
    """`katib-metrics parse --output json ARGS PATH` in `folder`, as a user would run it there."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            assert main(["--output", "json", *args, path]) == 0, err.getvalue()
    finally:
        os.chdir(cwd)
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def args_of(case: str) -> list[str]:
    return [line for line in (CORPUS / case / "args").read_text(encoding="utf-8").splitlines() if line]


def applied(args: list[str], suggestion: dict[str, Any], metric: str) -> tuple[list[str], str]:
    """The arguments with the suggested setting changed, and the metric name to count."""
    args = list(args)
    if "metricsFormat" in suggestion:
        while "-f" in args:
            at = args.index("-f")
            del args[at : at + 2]
        return args + [f for pattern in suggestion["metricsFormat"] for f in ("-f", pattern)], metric
    if "metric" in suggestion:
        at = args.index(metric)
        args[at] = suggestion["metric"]
        return args, suggestion["metric"]
    if "format" in suggestion:
        if "--format" in args:
            del args[args.index("--format") : args.index("--format") + 2]
        return [*args, "--format", suggestion["format"].lower()], metric
    raise AssertionError(f"unknown suggestion {suggestion}")


@pytest.mark.parametrize("case", CASES)
def test_diagnosis_is_the_golden_one(case: str) -> None:
    expected = json.loads((CORPUS / case / "expected.json").read_text(encoding="utf-8"))
    assert parse(CORPUS / case, args_of(case))["diagnosis"] == expected


@pytest.mark.parametrize("case", CASES)
def test_every_suggestion_collects_what_it_promises(case: str) -> None:
    for diagnosis in parse(CORPUS / case, args_of(case))["diagnosis"]:
        suggestion = diagnosis["suggestion"]
        if suggestion is None:
            continue
        args, name = applied(args_of(case), suggestion, diagnosis["metric"])
        document = parse(CORPUS / case, args)
        counts = {m["name"]: m for m in document["observation"]["metrics"]}
        logs = document["metric_logs"]
        if name:
            got = sum(1 for log in logs if log["metric"]["name"] == name and log["metric"]["value"] != "unavailable")
            assert got == suggestion["values"] >= 1, (case, suggestion, counts)
        else:
            assert len(logs) == suggestion["values"] >= 1


def test_the_corpus_covers_every_text_and_json_cause() -> None:
    causes = {d["cause"] for case in CASES for d in json.loads((CORPUS / case / "expected.json").read_text())}
    assert causes >= {"nothing_read", "filter_mismatch", "similar_names", "not_a_number", "not_found",
                      "json_key_elsewhere", "not_json_objects"}


@pytest.mark.parametrize("case", sorted(NO_SUGGESTION))
def test_near_misses_without_a_sure_fix_get_no_suggestion(case: str) -> None:
    assert all(d["suggestion"] is None for d in parse(CORPUS / case, args_of(case))["diagnosis"])


if __name__ == "__main__" and sys.argv[1:2] == ["--regenerate"]:
    for name in sys.argv[2:] or CASES:
        found = parse(CORPUS / name, args_of(name))["diagnosis"]
        (CORPUS / name / "expected.json").write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
        print(name, json.dumps(found, indent=1))
