"""TEXT lines: Katib's rules plus DESIGN differences 3 (non-numbers skipped), 5 (timestamps), 6 (time bound)."""

from __future__ import annotations

import time

import pytest

from katib_metrics.parsers.errors import FilterError
from katib_metrics.parsers.model import ZERO_TIME, CollectorSpec, MetricLog
from katib_metrics.parsers.stats import SkipReason
from katib_metrics.parsers.text import TextParser


def parse(line: str, *names: str, filters: tuple[str, ...] = (), default: str = ZERO_TIME) -> list[MetricLog]:
    return TextParser(CollectorSpec(metric_names=names, filters=filters)).parse_line(line, 1, default)


def test_katib_timestamp_token_is_kept_verbatim() -> None:
    line = "2021-12-02T14:27:50.000035161+09:00 epoch=1 loss=0.5"
    assert parse(line, "loss") == [MetricLog("2021-12-02T14:27:50.000035161+09:00", "loss", "0.5")]


def test_line_without_timestamp_gets_the_default_time() -> None:
    assert parse("loss=0.5", "loss") == [MetricLog(ZERO_TIME, "loss", "0.5")]
    assert parse("loss=0.5", "loss", default="2024-01-01T00:00:00Z")[0].time_stamp == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("line", "stamp"),
    [
        ("2024-03-04 01:55:08,123 INFO loss=1", "2024-03-04T01:55:08.123Z"),
        ("[2024-03-04 01:55:08.120] loss=1", "2024-03-04T01:55:08.12Z"),
        ("2024-03-04 01:55:08+01:00 loss=1", "2024-03-04T00:55:08Z"),
        ("[2024-03-04T01:55:08.5+09:00] loss=1", "2024-03-04T01:55:08.5+09:00"),
        ("2024-03-04T01:55:08\tloss=1", "2024-03-04T01:55:08Z"),
    ],
)
def test_our_timestamp_forms_are_normalised_to_utc(line: str, stamp: str) -> None:
    assert parse(line, "loss") == [MetricLog(stamp, "loss", "1")]


@pytest.mark.parametrize("value", ["abc", "-", "+"])
def test_values_that_are_not_numbers_are_skipped_and_counted(value: str) -> None:
    parser = TextParser(CollectorSpec(metric_names=("loss",)))
    assert parser.parse_line(f"loss={value} accuracy=1", 7) == []
    assert parser.stats.skipped[SkipReason.NOT_A_NUMBER] == 1
    assert parser.stats.first_skips[0].where == 7


def test_user_filter_capturing_a_non_number_is_skipped() -> None:
    parser = TextParser(CollectorSpec(metric_names=("loss",), filters=(r"(\w+):\s*(\S+)",)))
    assert parser.parse_line("loss: nan? loss: 0.5", 1) == [MetricLog(ZERO_TIME, "loss", "0.5")]
    assert parser.stats.skipped[SkipReason.NOT_A_NUMBER] == 1


def test_go_float_spellings_are_numbers() -> None:
    logs = parse("a: 1_000 b: 0x1p-2 c: NaN d: -Inf e: +nan", *"abcde", filters=(r"(\w+):\s*(\S+)",))
    assert [log.value for log in logs] == ["1_000", "0x1p-2", "NaN", "-Inf"]


def test_only_wanted_names_are_reported_in_filter_and_match_order() -> None:
    line = "val_loss=3 loss=1 accuracy=2 loss=4"
    filters = (r"([\w|-]+)\s*=\s*(\d+)", r"(loss)=(\d)")
    logs = parse(line, "loss", "accuracy", filters=filters)
    # The second filter is unanchored: it also finds the `loss=3` inside `val_loss=3`, as Go would.
    assert [(log.name, log.value) for log in logs] == [("loss", "1"), ("accuracy", "2"), ("loss", "4"),
                                                       ("loss", "3"), ("loss", "1"), ("loss", "4")]


def test_without_names_every_metric_is_reported() -> None:
    assert [log.name for log in parse("epoch 1: loss=0.8, acc=0.9")] == ["loss", "acc"]


def test_names_are_exact_and_case_sensitive() -> None:
    assert parse("Loss=1 train_loss=2 loss_ema=3", "loss") == []


def test_lines_are_counted_whether_or_not_they_hold_metrics() -> None:
    parser = TextParser(CollectorSpec(metric_names=("loss",)))
    for lineno, line in enumerate(["noise", "loss=1", "", "more noise"], 1):
        parser.parse_line(line, lineno)
    assert parser.stats.lines == 4
    assert parser.stats.values["loss"] == 1


def test_pathological_filter_costs_one_skipped_line_not_a_hang() -> None:
    parser = TextParser(CollectorSpec(metric_names=("a",), filters=(r"((a|a)+)(b)",)), regex_timeout=0.2)
    started = time.monotonic()
    assert parser.parse_line("a" * 60, 3) == []
    assert time.monotonic() - started < 3
    assert parser.stats.skipped[SkipReason.REGEX_TIMEOUT] == 1
    assert "line skipped" in parser.stats.first_skips[0].detail


def test_bad_filter_is_rejected_at_construction() -> None:
    with pytest.raises(FilterError):
        TextParser(CollectorSpec(filters=("(x",)))
