"""The reducer reproduces Katib's trial controller (reference §5.3) and its defaulting (§5.1)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.model import (
    UNAVAILABLE,
    ZERO_TIME,
    CollectorSpec,
    MetricLog,
    MetricSummary,
    ObjectiveType,
    Strategy,
)
from katib_metrics.parsers.strategies import Reducer, reduce_logs

T1, T2, T3 = "2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z", "2024-01-01T00:00:03Z"


def summary(logs: list[MetricLog], *names: str, objective: ObjectiveType = ObjectiveType.UNKNOWN) -> MetricSummary:
    return reduce_logs(CollectorSpec(metric_names=names or ("m",), objective_type=objective), logs)[0]


def test_min_max_keep_the_original_text() -> None:
    s = summary([MetricLog(T1, "m", "0.110"), MetricLog(T2, "m", "1E0"), MetricLog(T3, "m", ".5")])
    assert (s.min, s.max, s.latest, s.count) == ("0.110", "1E0", ".5", 3)


def test_latest_is_by_time_stamp_with_ties_to_the_later_row() -> None:
    s = summary([MetricLog(T2, "m", "2"), MetricLog(T1, "m", "1"), MetricLog(T2, "m", "3")])
    assert s.latest == "3"


def test_offsets_are_compared_as_instants() -> None:
    s = summary([MetricLog("2024-01-01T09:00:00+09:00", "m", "1"), MetricLog("2024-01-01T00:00:00.5Z", "m", "2"),
                 MetricLog("2023-12-31T19:00:00-05:00", "m", "3")])
    assert s.latest == "2"


def test_non_numbers_touch_latest_but_not_min_max() -> None:
    s = summary([MetricLog(T1, "m", "1"), MetricLog(T2, "m", "")])
    assert (s.min, s.max, s.latest, s.count) == ("1", "1", "", 1)


def test_missing_metric_is_unavailable_everywhere() -> None:
    s = summary([MetricLog(T1, "other", "1")], "m")
    assert (s.min, s.max, s.latest, s.value) == (UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)


def test_unavailable_row_alone_is_latest() -> None:
    s = summary([MetricLog.unavailable("m")])
    assert (s.min, s.max, s.latest) == (UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)


def test_nan_follows_go_comparisons() -> None:
    s = summary([MetricLog(T1, "m", "NaN"), MetricLog(T2, "m", "5"), MetricLog(T3, "m", "-5")])
    assert (s.min, s.max) == ("NaN", "NaN")


def test_strategy_defaults_follow_the_objective_type_for_every_metric() -> None:
    logs = [MetricLog(T1, "a", "1"), MetricLog(T2, "a", "3"), MetricLog(T3, "a", "2"), MetricLog(T1, "b", "7")]
    spec = CollectorSpec(metric_names=("a", "b"), objective_type=ObjectiveType.MAXIMIZE,
                         strategy_overrides={"b": Strategy.LATEST})
    a, b = reduce_logs(spec, logs)
    assert (a.strategy, a.value) == (Strategy.MAX, "3")
    assert (b.strategy, b.value) == (Strategy.LATEST, "7")
    (c,) = reduce_logs(CollectorSpec(metric_names=("a",), objective_type=ObjectiveType.MINIMIZE), logs)
    assert (c.strategy, c.value) == (Strategy.MIN, "1")
    (d,) = reduce_logs(CollectorSpec(metric_names=("a",)), logs)
    assert (d.strategy, d.value) == (Strategy.LATEST, "2")


def test_value_falls_back_to_latest_when_the_strategy_field_is_unavailable() -> None:
    spec = CollectorSpec(metric_names=("a",), objective_type=ObjectiveType.MAXIMIZE)
    (s,) = reduce_logs(spec, [MetricLog(T1, "a", "n/a")])
    assert (s.max, s.value) == (UNAVAILABLE, "n/a")


def test_order_follows_metric_names_or_first_appearance() -> None:
    logs = [MetricLog(T1, "b", "1"), MetricLog(T1, "a", "1")]
    assert [s.name for s in reduce_logs(CollectorSpec(metric_names=("a", "b")), logs)] == ["a", "b"]
    assert [s.name for s in reduce_logs(CollectorSpec(), logs)] == ["b", "a"]


def test_to_dict_has_katibs_fields() -> None:
    (s,) = reduce_logs(CollectorSpec(metric_names=("a",)), [MetricLog(ZERO_TIME, "a", "1")])
    assert s.to_dict() == {"name": "a", "min": "1", "max": "1", "latest": "1", "strategy": "latest", "value": "1"}


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
seconds = st.integers(min_value=0, max_value=4_000_000_000)


def _stamp(second: int) -> str:
    from katib_metrics.parsers.timestamps import Instant, format_rfc3339

    return format_rfc3339(Instant(second, 0))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(seconds, finite, min_size=1, max_size=30), st.randoms())
def test_latest_never_depends_on_input_order_for_distinct_timestamps(points: dict[int, float], rnd) -> None:  # type: ignore[no-untyped-def]
    logs = [MetricLog(_stamp(t), "m", repr(v)) for t, v in points.items()]
    shuffled = logs[:]
    rnd.shuffle(shuffled)
    # Only latest is order-free: among equal values (0.0 and -0.0) min and max keep the first one seen.
    assert summary(logs).latest == summary(shuffled).latest
    assert float(summary(logs).min) == float(summary(shuffled).min)
    assert summary(logs).latest == repr(points[max(points)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(seconds, finite), min_size=1, max_size=30))
def test_min_le_latest_le_max(points: list[tuple[int, float]]) -> None:
    s = summary([MetricLog(_stamp(t), "m", repr(v)) for t, v in points])
    low, high, last = float(s.min), float(s.max), float(s.latest)
    assert low <= last <= high
    assert low == min(v for _, v in points) and high == max(v for _, v in points)
    assert not math.isnan(low)


def test_reducer_ignores_unrequested_metrics() -> None:
    reducer = Reducer(CollectorSpec(metric_names=("a",)))
    reducer.add(MetricLog(T1, "b", "1"))
    assert [s.name for s in reducer.summaries()] == ["a"]


VALUE_TEXTS = st.sampled_from(
    ["0.5", "1", "-2", "1e3", ".5", "5.", "NaN", "0x1p-2", "", "abc", "1e400", "+Inf", "0.50", "-0", "0"])
UTC_STAMPS = ["2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z", "2023-12-31T23:59:59Z", "2024-01-01T00:00:02Z"]
STAMPS = st.sampled_from([
    *UTC_STAMPS, "2024-01-01T00:00:01.5Z", "2024-01-01T00:00:01.7Z",
    "2024-01-01T09:00:01+09:00", ZERO_TIME, "2024-01-01T1:00:00Z", "not a time",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(STAMPS, st.sampled_from(["a", "b"]), VALUE_TEXTS), max_size=40),
       st.integers(min_value=1, max_value=40))
def test_batched_reduction_equals_row_by_row(rows: list[tuple[str, str, str]], cut: int) -> None:
    spec = CollectorSpec(metric_names=("a", "b"))
    logs = [MetricLog(*row) for row in rows]
    one_by_one, batched = Reducer(spec), Reducer(spec)
    for log in logs:
        one_by_one.add(log)
    batched.add_all(logs[:cut])
    batched.add_all(logs[cut:])
    assert batched.summaries() == one_by_one.summaries()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(UTC_STAMPS), st.just("a"),
                          st.sampled_from(["0.5", "1", "-2", "1e3", ".5", "5.", "0.50", "2", "-0.0", "0.0"])),
                min_size=9, max_size=60))
def test_batched_fast_path_equals_row_by_row(rows: list[tuple[str, str, str]]) -> None:
    spec = CollectorSpec(metric_names=("a",))
    logs = [MetricLog(*row) for row in rows]
    one_by_one, batched = Reducer(spec), Reducer(spec)
    for log in logs:
        one_by_one.add(log)
    batched.add_all(logs)
    assert batched.summaries() == one_by_one.summaries()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(UTC_STAMPS), VALUE_TEXTS, VALUE_TEXTS, VALUE_TEXTS), min_size=1, max_size=30),
       st.sampled_from([("a", "b", "c"), ("b", "a"), ("a",)]), st.integers(min_value=0, max_value=3))
def test_rows_that_repeat_their_names_equal_row_by_row(
        lines: list[tuple[str, str, str, str]], names: tuple[str, ...], shuffle: int) -> None:
    # A dense log's rows (`a b c a b c ...`, picked by stride), or the same with one line's names swapped.
    logs = [MetricLog(stamp, name, value)
            for stamp, *values in lines for name, value in zip(names, values[: len(names)], strict=True)]
    if shuffle and len(logs) > shuffle:
        logs[shuffle - 1], logs[shuffle] = logs[shuffle], logs[shuffle - 1]
    spec = CollectorSpec(metric_names=("a", "b", "c"))
    one_by_one, batched = Reducer(spec), Reducer(spec)
    for log in logs:
        one_by_one.add(log)
    batched.add_all(logs)
    assert batched.summaries() == one_by_one.summaries()


# Stamps as event files write them: one text per instant (no trailing zero in the fraction), several lengths.
EVENT_STAMPS = st.sampled_from([
    "2024-01-01T00:00:01Z", "2024-01-01T00:00:01.5Z", "2024-01-01T00:00:01.25Z", "2024-01-01T00:00:01.000001Z",
    "2024-01-01T00:00:02Z", "2023-12-31T23:59:59.999999Z", "2024-01-01T00:00:01.05Z", "2024-01-01T00:00:01.5Z",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(EVENT_STAMPS, st.just("a"), st.sampled_from(["0.5", "1", "-2", "3", "7"])),
                min_size=9, max_size=60), st.sampled_from([None, "2024-01-01T00:00:01.5Z", "2024-01-01T00:00:01.50Z"]))
def test_stamps_of_several_lengths_equal_row_by_row(rows: list[tuple[str, str, str]], odd: str | None) -> None:
    spec = CollectorSpec(metric_names=("a",))
    logs = [MetricLog(*row) for row in rows] + ([MetricLog(odd, "a", "9")] if odd else [])
    one_by_one, batched = Reducer(spec), Reducer(spec)
    for log in logs:
        one_by_one.add(log)
    batched.add_all(logs)
    assert batched.summaries() == one_by_one.summaries()
