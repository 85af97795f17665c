"""Push mode at the edges of what it sends: a db-manager's message size limit (gRPC's default 4 MiB; just
under is stored, just over is refused at once with a clear error and the values around it are still stored),
and non-finite values."""

from __future__ import annotations

import math
import time

import pytest

import katib_metrics
from katib_metrics import MetricsReporter
from katib_metrics.parsers.numbers import parse_go_float
from tests.collector.push_doubles import QueryableRecorder, serving, trial_env

pytestmark = pytest.mark.timeout(60)
__all__ = ["trial_env"]  # a fixture, used by name

LIMIT = 4 * 1024 * 1024  # what a gRPC server accepts unless configured otherwise (the recorder is not)


def test_a_value_just_under_the_limit_is_stored_and_just_over_fails_at_once(trial_env: str) -> None:
    under, over = "u" * (LIMIT - 1024), "o" * LIMIT
    for servicer, address in serving(QueryableRecorder()):
        katib_metrics.report_metrics({under: 1.0}, db_manager_address=address, timeout=60)
        started = time.monotonic()
        with pytest.raises(RuntimeError) as refused:
            katib_metrics.report_metrics({"loss": 0.5, over: 2.0}, db_manager_address=address, timeout=60)
        took = time.monotonic() - started
        message = str(refused.value)
        assert "larger than max" in message and "which no retry can pass" in message
        assert "1 rows not stored (ooo" in message and "the other 1 stored" in message
        assert len(message) < 1000, "the message repeats the 4 MiB name"
        assert took < 10, f"a request no retry can pass was retried for {took:.1f} s"
        assert [(name[:1], len(name), value) for _, name, value in servicer.all_rows()] == [
            ("u", LIMIT - 1024, "1.0"), ("l", 4, "0.5")]


def test_a_reporter_sets_an_oversized_value_aside_and_stores_the_values_behind_it(
        trial_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    for servicer, address in serving(QueryableRecorder()):
        reporter = MetricsReporter(address)
        reporter.report({"loss": 1})
        reporter.report({"o" * LIMIT: 2})
        for step in range(2, 100):
            reporter.report({"loss": step})
        assert not reporter.flush(30)  # not everything was stored ...
        assert reporter.close() == 1  # ... one value was not
        assert [int(value) for _, name, value in servicer.all_rows() if name == "loss"] == [1, *range(2, 100)]
        err = capsys.readouterr().err
        assert "katib_metrics: 1 metric values of trial push-trial (ooooo" in err
        assert "NOT reported" in err and "larger than max" in err
        assert max(len(line) for line in err.splitlines()) < 1000, "stderr repeats the 4 MiB name"


def test_non_finite_values_are_stored_as_text_gos_parser_reads(trial_env: str) -> None:
    # Katib's SDK sends str(value): "nan", "inf", "-inf"; Go's strconv.ParseFloat reads all three.
    for servicer, address in serving(QueryableRecorder()):
        katib_metrics.report_metrics({"a": float("nan"), "b": float("inf"), "c": -math.inf, "d": "NaN"},
                                     db_manager_address=address, timeout=30)
        assert [(name, value) for _, name, value in servicer.all_rows()] == [
            ("a", "nan"), ("b", "inf"), ("c", "-inf"), ("d", "NaN")]
        assert all(parse_go_float(value) is not None for _, _, value in servicer.all_rows())
