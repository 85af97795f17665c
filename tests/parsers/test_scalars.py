"""ScalarRows: rows kept as numbers write the same MetricLogs, and reduce to the same summaries, as written rows."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.scalars import ScalarRows, StampFormatter
from katib_metrics.parsers.strategies import Reducer
from katib_metrics.parsers.tfvalues import float32_text

T0 = 1_700_000_000.0


def f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


# Values as real writers produce them, plus the awkward ones: ties, signed zeros, powers of two, extremes.
values = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0**-149, 3.4028234663852886e38, -1e-45, 0.1, 0.2]),
).map(f32)
specials = st.sampled_from([math.nan, math.inf, -math.inf])
# Wall times that tie at the microsecond, straddle a second, carry past .9999995, or have no stamp of their own.
walls = st.one_of(
    st.integers(0, 40).map(lambda step: T0 + step * 0.25e-6),
    st.sampled_from([T0 + 0.9999995, T0 + 0.99999949, T0 + 1.0, T0 - 0.5, 0.0, -1.5, 1e-7]),
    st.floats(min_value=-62_135_596_800.0, max_value=253_402_300_799.0),
)
odd_walls = st.sampled_from([math.nan, math.inf, -1e20, 253_402_300_800.0])
keys = st.sampled_from([("loss",), ("acc",), ("loss", "train/loss"), ()])


def batches(value: st.SearchStrategy[float], wall: st.SearchStrategy[float]) -> st.SearchStrategy[list[ScalarRows]]:
    row = st.tuples(wall, keys, value)
    batch = st.lists(row, max_size=40).map(
        lambda rows: ScalarRows([w for w, _, _ in rows], [k for _, k, _ in rows], [v for _, _, v in rows],
                                StampFormatter())
    )
    return st.lists(batch, min_size=1, max_size=4)


def reduce(spec: CollectorSpec, parts: list[ScalarRows], *, written: bool) -> list[tuple[object, ...]]:
    reducer = Reducer(spec)
    for part in parts:
        reducer.add_all(list(part) if written else part)
    return [(s.name, s.min, s.max, s.latest, s.count) for s in reducer.summaries()] + [tuple(sorted(reducer.seen()))]


SPECS = [CollectorSpec(("loss", "acc", "train/loss")), CollectorSpec(("acc",)), CollectorSpec()]


@settings(max_examples=300, deadline=None)
@given(batches(values, walls), st.sampled_from(SPECS))
def test_summaries_equal_reducing_the_written_rows(parts: list[ScalarRows], spec: CollectorSpec) -> None:
    assert reduce(spec, parts, written=False) == reduce(spec, parts, written=True)


@settings(max_examples=150, deadline=None)
@given(batches(st.one_of(values, specials), st.one_of(walls, odd_walls)), st.sampled_from(SPECS))
def test_nan_infinities_and_stampless_times_take_the_rows(parts: list[ScalarRows], spec: CollectorSpec) -> None:
    assert reduce(spec, parts, written=False) == reduce(spec, parts, written=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(walls, keys, values), max_size=40))
def test_rows_are_written_in_order(rows: list[tuple[float, tuple[str, ...], float]]) -> None:
    batch = ScalarRows([w for w, _, _ in rows], [k for _, k, _ in rows], [v for _, _, v in rows], StampFormatter())
    stamp = StampFormatter()
    expected = [MetricLog(stamp(w), name, float32_text(v)) for w, key, v in rows for name in key]
    assert list(batch) == expected
    assert len(batch) == len(expected)
    assert batch.names() == {name for _, key, _ in rows for name in key}
    if expected:
        assert batch[-1] == expected[-1]


def test_the_latest_is_the_last_row_of_the_latest_microsecond() -> None:
    # .0000004 and .0000006 round to different microseconds; .9999996 carries into the next second.
    walls_ = [T0 + 0.9999996, T0 + 1.0000004, T0 + 0.5, T0 + 1.0]
    batch = ScalarRows(walls_, [("m",)] * 4, [1.0, 2.0, 3.0, 4.0], StampFormatter())
    [part] = batch.summaries() or []
    assert (part.latest, part.latest_at) == ("4", "2023-11-14T22:13:21Z")
    assert (part.min_text, part.max_text, part.count) == ("1", "4", 4)
