"""Prometheus exposition text: samples, selectors, escapes, timestamps, and what is skipped and counted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.prometheus import (
    _lines,
    compile_selectors,
    iter_samples,
    line_count,
    parse_exposition,
    rfc3339_from_ns,
    series_text,
)
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipReason

T0 = "2024-03-04T01:55:08Z"


def generate_openmetrics(registry: CollectorRegistry) -> bytes:
    data: bytes = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
    return data


DOC = """\
# HELP accuracy Validation accuracy.
# TYPE accuracy gauge
accuracy{split="val"} 0.91 1700000000123
accuracy{split="train"} 0.95
# a free comment
loss 1.0e-05

# TYPE steps_total counter
steps_total 12
"""


def spec(*names: str) -> CollectorSpec:
    return CollectorSpec(metric_names=names)


def test_plain_name_selects_every_series_of_that_name() -> None:
    logs = parse_exposition(DOC, spec("accuracy", "loss"), T0)
    assert logs == [
        MetricLog("2023-11-14T22:13:20.123Z", "accuracy", "0.91"),
        MetricLog(T0, "accuracy", "0.95"),
        MetricLog(T0, "loss", "1e-05"),
    ]


def test_selector_picks_one_series_and_names_rows_as_requested() -> None:
    logs = parse_exposition(DOC, spec('accuracy{split="train"}'), T0)
    assert logs == [MetricLog(T0, 'accuracy{split="train"}', "0.95")]


def test_selector_labels_are_a_subset_match() -> None:
    text = 'acc{split="val",epoch="3"} 0.5\nacc{split="train",epoch="3"} 0.7\n'
    assert [log.value for log in parse_exposition(text, spec('acc{ split = "val" , }'), T0)] == ["0.5"]


def test_without_names_every_sample_is_a_row_named_by_its_series() -> None:
    logs = parse_exposition(DOC, CollectorSpec(), T0)
    assert [log.name for log in logs] == [
        'accuracy{split="val"}',
        'accuracy{split="train"}',
        "loss",
        "steps_total",
    ]
    assert [log.value for log in logs] == ["0.91", "0.95", "1e-05", "12"]


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("m NaN", "NaN"),
        ("m nan", "NaN"),
        ("m +Inf", "+Inf"),
        ("m -Inf", "-Inf"),
        ("m 1e3", "1000"),
        ("m -0.25", "-0.25"),
        ("m 0x1p-2", "0.25"),
        ("m\t7", "7"),
        ("  m 7  ", "7"),
    ],
)
def test_values_are_go_floats_written_shortest(line: str, value: str) -> None:
    assert parse_exposition(line + "\n", spec("m"), T0) == [MetricLog(T0, "m", value)]


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("0", "1970-01-01T00:00:00Z"),
        ("1500", "1970-01-01T00:00:01.5Z"),
        ("-1", "1969-12-31T23:59:59.999Z"),
        ("1700000000120", "2023-11-14T22:13:20.12Z"),
    ],
)
def test_millisecond_timestamps_become_utc_rfc3339(stamp: str, expected: str) -> None:
    assert parse_exposition(f"m 1 {stamp}\n", spec("m"), T0)[0].time_stamp == expected


def test_label_values_unescape_and_series_text_escapes_back() -> None:
    text = 'm{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb",other="\\t"} 1\n'
    sample = next(iter_samples(text))
    assert dict(sample.labels) == {"path": "C:\\dir", "quote": 'say "hi"', "nl": "a\nb", "other": "\\t"}
    assert series_text(sample.name, sample.labels) == (
        'm{nl="a\\nb",other="\\\\t",path="C:\\\\dir",quote="say \\"hi\\""}'
    )


def test_utf8_metric_names_inside_braces() -> None:
    text = '{"my.metric", "le.vel"="x"} 2\n{"my.metric"} 3\n'
    assert [log.value for log in parse_exposition(text, spec("my.metric"), T0)] == ["2", "3"]
    names = [log.name for log in parse_exposition(text, CollectorSpec(), T0)]
    assert names == ['{"my.metric","le.vel"="x"}', "my.metric"]
    assert [log.value for log in parse_exposition(text, spec(names[0]), T0)] == ["2"]


def test_histogram_and_summary_samples_keep_their_own_names() -> None:
    registry = CollectorRegistry()
    Histogram("latency_seconds", "h", registry=registry, buckets=(0.5, 1.0)).observe(0.7)
    Summary("size_bytes", "s", registry=registry).observe(42)
    text = generate_latest(registry).decode()
    logs = parse_exposition(
        text,
        spec(
            'latency_seconds_bucket{le="1.0"}',
            "latency_seconds_count",
            "latency_seconds_sum",
            "size_bytes_sum",
        ),
        T0,
    )
    assert [(log.name, log.value) for log in logs] == [
        ('latency_seconds_bucket{le="1.0"}', "1"),
        ("latency_seconds_count", "1"),
        ("latency_seconds_sum", "0.7"),
        ("size_bytes_sum", "42"),
    ]


def test_real_client_library_output_parses_without_skips() -> None:
    registry = CollectorRegistry()
    Counter("epochs", "e", ["run"], registry=registry).labels(run='a "b"\\c').inc(3)
    Gauge("accuracy", "a", registry=registry).set(0.875)
    stats = ParseStats()
    logs = parse_exposition(generate_latest(registry).decode(), CollectorSpec(), T0, stats)
    assert stats.skipped_total == 0
    values = {log.name: log.value for log in logs}
    assert values["accuracy"] == "0.875"
    assert values['epochs_total{run="a \\"b\\"\\\\c"}'] == "3"


def test_openmetrics_text_seconds_timestamps_exemplars_and_eof() -> None:
    text = (
        "# TYPE acc gauge\n"
        "# UNIT acc ratio\n"
        "acc 0.5 1700000000.25\n"
        'req_total 3 # {trace_id="abc"} 1.0 1700000000.5\n'
        "# EOF\n"
        "after 1\n"
    )
    logs = parse_exposition(text, CollectorSpec(), T0)
    assert logs == [MetricLog("2023-11-14T22:13:20.25Z", "acc", "0.5"), MetricLog(T0, "req_total", "3")]


def test_client_library_openmetrics_output_parses() -> None:
    registry = CollectorRegistry()
    Counter("epochs", "e", registry=registry).inc(2)
    stats = ParseStats()
    logs = parse_exposition(generate_openmetrics(registry).decode(), spec("epochs_total"), T0, stats)
    assert logs == [MetricLog(T0, "epochs_total", "2")]
    assert stats.skipped_total == 0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("m abc", SkipReason.NOT_A_NUMBER),
        ("m 1_0x", SkipReason.NOT_A_NUMBER),
        ("m", SkipReason.BAD_RECORD),
        ('m{a="b"', SkipReason.BAD_RECORD),
        ("m{a=b} 1", SkipReason.BAD_RECORD),
        ('m{a="b" c="d"} 1', SkipReason.BAD_RECORD),
        ("m 1 2 3", SkipReason.BAD_RECORD),
        ("m 1 1.5", SkipReason.BAD_RECORD),
        ("m 1 99999999999999999", SkipReason.BAD_RECORD),
        ("m1x{} 1 x", SkipReason.BAD_RECORD),
        ('{a="b"} 1', SkipReason.BAD_RECORD),
        ("9m 1", SkipReason.BAD_RECORD),
    ],
)
def test_bad_lines_are_skipped_counted_and_reported(line: str, reason: SkipReason) -> None:
    stats = ParseStats()
    seen: list[Skipped] = []
    text = f"ok 1\n{line}\nok 2\n"
    logs = parse_exposition(text, CollectorSpec(), T0, stats, seen.append)
    assert [log.value for log in logs] == ["1", "2"]
    assert stats.skipped == {reason: 1}
    assert [(skip.where, skip.reason) for skip in seen] == [(2, reason)]
    assert "line 2" in seen[0].detail


def test_stats_count_values_per_row_name_and_leave_lines_to_the_reader() -> None:
    stats = ParseStats()
    parse_exposition(DOC, spec("accuracy", "loss"), T0, stats)
    assert stats.values == {"accuracy": 2, "loss": 1}
    assert stats.lines == 0


@pytest.mark.parametrize(("text", "count"), [("", 0), ("a 1", 1), ("a 1\n", 1), ("a 1\n\nb 2", 3), ("\n", 1)])
def test_line_count_matches_the_parser_line_numbers(text: str, count: int) -> None:
    assert line_count(text) == count


def test_a_sample_matching_two_requested_names_gives_a_row_for_each() -> None:
    logs = parse_exposition(DOC, spec("accuracy", 'accuracy{split="val"}'), T0)
    assert [log.name for log in logs] == ["accuracy", 'accuracy{split="val"}', "accuracy"]


@pytest.mark.parametrize("bad", ['acc{split="val"', "acc{split=val}", 'acc{split="val"} x', '{split="v"}'])
def test_malformed_selector_is_a_spec_error_naming_it(bad: str) -> None:
    with pytest.raises(SpecError, match="selector") as info:
        compile_selectors([bad])
    assert repr(bad) in str(info.value)


def test_plain_names_that_are_not_prometheus_names_still_match_by_equality() -> None:
    assert parse_exposition('{"val/acc"} 1\n', spec("val/acc"), T0) == [MetricLog(T0, "val/acc", "1")]


def test_crlf_and_missing_final_newline_are_tolerated() -> None:
    assert [log.value for log in parse_exposition("a 1\r\nb 2", CollectorSpec(), T0)] == ["1", "2"]


def test_only_newline_ends_a_line() -> None:
    text = 'a{x="1\r2\u20283\x0b4"} 5\n'
    [sample] = iter_samples(text)
    assert sample.labels == (("x", "1\r2\u20283\x0b4"),)


def test_rfc3339_from_ns_trims_the_fraction_like_go() -> None:
    assert rfc3339_from_ns(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert rfc3339_from_ns(123) == "1970-01-01T00:00:00.000000123Z"
    assert rfc3339_from_ns(-62135596800 * 10**9) == "0001-01-01T00:00:00Z"


_label_values = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Z", "Cc")), max_size=12
)


@given(
    labels=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), _label_values, max_size=4),
    value=st.floats(allow_nan=True, allow_infinity=True),
)
def test_series_text_round_trips_through_the_parser(labels: dict[str, str], value: float) -> None:
    registry = CollectorRegistry()
    names = sorted(labels)
    gauge = Gauge("g", "g", names, registry=registry)
    (gauge.labels(**labels) if names else gauge).set(value)
    [log] = parse_exposition(generate_latest(registry).decode(), CollectorSpec(), T0)
    assert log.name == series_text("g", tuple(sorted(labels.items())))
    assert log.value == ("NaN" if math.isnan(value) else log.value)
    assert math.isnan(value) or float(log.value) == value
    [selected] = parse_exposition(generate_latest(registry).decode(), spec(log.name), T0)
    assert selected.value == log.value


@given(st.text(alphabet="ab\n\r", max_size=60), st.integers(1, 8))
def test_lines_are_split_by_pieces_exactly_as_one_split_would(text: str, piece: int) -> None:
    """`_lines` splits a large exposition a piece at a time; the lines are those of `text.split("\\n")`, a final
    newline ending the last one."""
    whole = text.split("\n")
    assert list(_lines(text, piece)) == (whole[:-1] if whole[-1] == "" else whole)
