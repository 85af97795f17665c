"""JSON lines: Katib's rules plus DESIGN differences 1 (numeric values), 2 (real fractions), 12 (bad lines)."""

from __future__ import annotations

import pytest

from katib_metrics.parsers.jsonl import JsonLinesParser
from katib_metrics.parsers.model import ZERO_TIME, CollectorSpec, MetricLog
from katib_metrics.parsers.stats import SkipReason


def parse(line: str, *names: str, default: str = ZERO_TIME) -> list[MetricLog]:
    return JsonLinesParser(CollectorSpec(metric_names=names)).parse_line(line, 1, default)


def test_string_values_are_kept_verbatim_in_metric_list_order() -> None:
    line = '{"accuracy": "0.9", "timestamp": "2021-12-02T14:27:50.000035161+09:00", "loss": "1E0"}'
    assert parse(line, "loss", "accuracy") == [
        MetricLog("2021-12-02T14:27:50.000035161+09:00", "loss", "1E0"),
        MetricLog("2021-12-02T14:27:50.000035161+09:00", "accuracy", "0.9"),
    ]


def test_numeric_values_are_accepted_difference_1() -> None:
    assert parse('{"loss": 0.5, "step": 3, "big": 1e21}', "loss", "step", "big") == [
        MetricLog(ZERO_TIME, "loss", "0.5"), MetricLog(ZERO_TIME, "step", "3"), MetricLog(ZERO_TIME, "big", "1e+21")]


@pytest.mark.parametrize("value", ["true", "false", "null", '"abc"', '" 1"', "[1]", '{"a": 1}'])
def test_values_that_are_not_numbers_are_skipped_and_counted(value: str) -> None:
    parser = JsonLinesParser(CollectorSpec(metric_names=("loss",)))
    assert parser.parse_line(f'{{"loss": {value}}}', 2) == []
    assert parser.stats.skipped[SkipReason.NOT_A_NUMBER] == 1


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("1638422847.28721", "2021-12-02T05:27:27.28721Z"),
        ("1638422847.287801", "2021-12-02T05:27:27.287801Z"),
        ("1638422847", "2021-12-02T05:27:27Z"),
        ("1638422847.0", "2021-12-02T05:27:27Z"),
        ('"2021-12-02T14:27:50.5+09:00"', "2021-12-02T14:27:50.5+09:00"),
        ('"2021-12-02 05:27:27,5"', "2021-12-02T05:27:27.5Z"),
        ('""', ZERO_TIME),
        ('"yesterday"', ZERO_TIME),
        ("true", ZERO_TIME),
        ("null", ZERO_TIME),
        ("{}", ZERO_TIME),
    ],
)
def test_timestamps_difference_2(stamp: str, expected: str) -> None:
    assert parse(f'{{"timestamp": {stamp}, "loss": "1"}}', "loss") == [MetricLog(expected, "loss", "1")]


def test_missing_timestamp_uses_the_default_time() -> None:
    assert parse('{"loss": "1"}', "loss", default="2024-01-01T00:00:00Z")[0].time_stamp == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "line",
    ["epoch 3 done", '{"loss": "0.5"', '[{"loss": "1"}]', '"loss"', "3", '{"loss": NaN}', '{"loss": Infinity}',
     '{"loss": 1e400}', "null"],
)
def test_lines_that_are_not_json_objects_are_skipped_with_their_line_number(line: str) -> None:
    warnings = []
    parser = JsonLinesParser(CollectorSpec(metric_names=("loss",)), on_skip=warnings.append)
    assert parser.parse_line(line, 42) == []
    assert parser.stats.skipped[SkipReason.INVALID_JSON] == 1
    assert warnings[0].where == 42


def test_bad_lines_do_not_discard_the_good_ones() -> None:
    parser = JsonLinesParser(CollectorSpec(metric_names=("loss",)))
    lines = ['{"loss": "1"}', "Traceback (most recent call last):", '{"loss": 2}', '{"loss": "3"']
    logs = [log for n, line in enumerate(lines, 1) for log in parser.parse_line(line, n)]
    assert [log.value for log in logs] == ["1", "2"]
    assert parser.stats.lines == 4


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_blank_lines_are_ignored(line: str) -> None:
    parser = JsonLinesParser(CollectorSpec(metric_names=("loss",)))
    assert parser.parse_line(line, 1) == []
    assert parser.stats.skipped_total == 0


def test_crlf_and_duplicate_keys() -> None:
    assert parse('{"loss": "1", "loss": "2"}\r', "loss") == [MetricLog(ZERO_TIME, "loss", "2")]


def test_without_names_every_numeric_key_is_reported() -> None:
    logs = parse('{"timestamp": 5, "epoch": 1, "loss": "0.5", "tag": "train", "ok": true}')
    assert [(log.name, log.value) for log in logs] == [("epoch", "1"), ("loss", "0.5")]
