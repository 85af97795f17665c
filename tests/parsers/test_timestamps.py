"""Timestamps: Go's RFC3339Nano grammar exactly, our lenient line forms, JSON numbers, storage precision."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.timestamps import (
    Instant,
    format_rfc3339,
    is_go_rfc3339nano,
    json_timestamp,
    line_timestamp,
    parse_rfc3339,
    to_storage,
    unix_to_rfc3339,
)

EPOCH = dt.datetime(1970, 1, 1)
ONE_SECOND = dt.timedelta(seconds=1)

# --- an independent oracle: Go's time.parse walked step by step for the RFC3339Nano layout -------------


class _Bad(Exception):
    pass


def _getnum(value: str, fixed: bool) -> tuple[int, str]:
    """Go's `getnum`: one or two leading ASCII digits (exactly two when fixed)."""
    if not value or value[0] not in "0123456789":
        raise _Bad
    if len(value) < 2 or value[1] not in "0123456789":
        if fixed:
            raise _Bad
        return int(value[0]), value[1:]
    return int(value[:2]), value[2:]


def _expect(value: str, literal: str) -> str:
    if not value.startswith(literal):
        raise _Bad
    return value[len(literal) :]


def _go_zone(value: str) -> str:
    if value.startswith("Z"):
        return value[1:]
    if len(value) < 6 or value[3] != ":" or value[0] not in "+-":
        raise _Bad
    hour, rest = _getnum(value[1:3], True)
    minute, rest2 = _getnum(value[4:6], True)
    if rest or rest2 or hour > 24 or minute > 60:
        raise _Bad
    return value[6:]


def _go_accepts(text: str) -> bool:
    """What Go 1.24's `time.Parse(time.RFC3339Nano, text)` returns without error, per its source."""
    try:
        if len(text) < 4 or not text[:4].isascii() or not text[:4].isdigit():
            raise _Bad
        year, value = int(text[:4]), _expect(text[4:], "-")
        month, value = _getnum(value, True)
        day, value = _getnum(_expect(value, "-"), True)
        hour, value = _getnum(_expect(value, "T"), False)
        minute, value = _getnum(_expect(value, ":"), True)
        second, value = _getnum(_expect(value, ":"), True)
        if len(value) >= 2 and value[0] in ".," and value[1] in "0123456789":
            value = value[1:].lstrip("0123456789")
        value = _go_zone(value)
    except _Bad:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days_in = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    in_range = 1 <= month <= 12 and hour < 24 and minute < 60 and second < 60
    return not value and in_range and 1 <= day <= days_in[month - 1]


# --- Go's grammar (reference §8.1) ------------------------------------------------------------------

GO_ACCEPTS = [
    "2021-12-02T14:27:50.000035161+09:00",
    "2024-03-04T01:55:08Z",
    "2024-03-04T1:55:08Z",  # one-digit hour
    "2024-03-04T01:55:08,123Z",  # comma fraction
    "2024-03-04T01:55:08.1234567891234Z",  # digits beyond ns
    "2024-03-04T01:55:08+24:00",
    "2024-03-04T01:55:08+09:60",
    "2024-03-04T01:55:08-00:00",
    "2000-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "0000-02-29T00:00:00Z",  # year 0 is a leap year
    "9999-12-31T23:59:59.999999999Z",
]
GO_REJECTS = [
    "2024-03-04T01:55:08+25:00",
    "2024-03-04T01:55:08+09:61",
    "2024-03-04T01:55:08+0900",
    "2024-03-04T01:55:08+9:00",
    "2024-03-04T01:55:08z",
    "2024-03-04t01:55:08Z",
    "2024-03-04 01:55:08Z",
    "2024-03-04T01:55:08Z\r",
    "2024-03-04T01:55:08Z ",
    " 2024-03-04T01:55:08Z",
    "1900-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "2024-03-04T01:55:60Z",
    "2024-03-04T01:60:08Z",
    "2024-03-04T24:00:00Z",
    "2024-03-04T01:55:08.Z",
    "2024-03-04T01:55:08",  # no zone
    "2024-3-04T01:55:08Z",
    "2024-03-4T01:55:08Z",
    "2024-00-04T01:55:08Z",
    "2024-13-04T01:55:08Z",
    "2024-03-00T01:55:08Z",
    "2024-03-04T01:5:08Z",
    "2024-03-04T01:55:8Z",
    "2024-03-04T001:55:08Z",
    "+024-03-04T01:55:08Z",
    "20240-03-04T01:55:08Z",
    "２０２４-03-04T01:55:08Z",  # non-ASCII digits
    "2024-03-04T01:55:08.١Z",
    "",
]


@pytest.mark.parametrize("text", GO_ACCEPTS)
def test_go_accepts(text: str) -> None:
    assert is_go_rfc3339nano(text)
    assert _go_accepts(text)  # the oracle agrees with the reference's list
    assert parse_rfc3339(text) is not None


@pytest.mark.parametrize("text", GO_REJECTS)
def test_go_rejects(text: str) -> None:
    assert not is_go_rfc3339nano(text)
    assert not _go_accepts(text)
    assert parse_rfc3339(text) is None


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2021-12-02T14:27:50.000035161+09:00", "2021-12-02T05:27:50.000035161Z"),
        ("2024-03-04T1:55:08,120Z", "2024-03-04T01:55:08.12Z"),
        ("2024-03-04T01:55:08.1234567891234Z", "2024-03-04T01:55:08.123456789Z"),  # truncated, not rounded
        ("2024-03-04T01:55:08.9999999999Z", "2024-03-04T01:55:08.999999999Z"),
        ("2024-03-04T01:55:08.000Z", "2024-03-04T01:55:08Z"),
        ("2024-03-04T01:55:08+24:00", "2024-03-03T01:55:08Z"),
        ("2024-03-04T01:55:08+09:60", "2024-03-03T15:55:08Z"),
        ("2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00Z"),
        ("2023-12-31T23:00:00-01:00", "2024-01-01T00:00:00Z"),
        ("0000-01-01T00:00:00+01:00", "-0001-12-31T23:00:00Z"),  # as Go writes year -1
        ("9999-12-31T23:30:00-01:00", "10000-01-01T00:30:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ],
)
def test_parse_then_format_is_go_utc_rfc3339nano(text: str, utc: str) -> None:
    instant = parse_rfc3339(text)
    assert instant is not None
    assert format_rfc3339(instant) == utc


def test_instant_values_and_validation() -> None:
    assert parse_rfc3339("1970-01-01T00:00:00Z") == Instant(0, 0)
    assert parse_rfc3339("1969-12-31T23:59:59.5Z") == Instant(-1, 500_000_000)
    assert parse_rfc3339("0001-01-01T00:00:00Z") == Instant(-62_135_596_800, 0)
    with pytest.raises(ValueError, match="nanos"):
        Instant(0, 1_000_000_000)
    with pytest.raises(ValueError, match="nanos"):
        Instant(0, -1)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2021-12-02T05:27:27.000028721Z", "2021-12-02T05:27:27.000028Z"),  # reference §1.5
        ("2021-12-02T14:27:27.999999999+09:00", "2021-12-02T05:27:27.999999Z"),
        ("2016-12-31T21:02:05.123456Z", "2016-12-31T21:02:05.123456Z"),
        ("2016-12-31T21:02:05.0000009Z", "2016-12-31T21:02:05Z"),
        ("1969-12-31T23:59:59.9999999Z", "1969-12-31T23:59:59.999999Z"),
    ],
)
def test_storage_truncates_to_microseconds(text: str, stored: str) -> None:
    instant = to_storage(text)
    assert instant is not None
    assert instant.nanos % 1000 == 0
    assert format_rfc3339(instant) == stored


def test_storage_rejects_what_go_rejects() -> None:
    assert to_storage("2024-03-04 01:55:08") is None
    assert to_storage("") is None


# --- text lines (DESIGN difference 5) ---------------------------------------------------------------

LINES = [
    # Katib's rule: the first space-separated token, verbatim.
    ("2021-12-02T14:27:50.000035161+09:00 loss=1", "2021-12-02T14:27:50.000035161+09:00"),
    ("2024-03-04T1:55:08,50Z loss=1", "2024-03-04T1:55:08,50Z"),
    ("2024-03-04T01:55:08+24:00 x", "2024-03-04T01:55:08+24:00"),
    # A tab is part of Katib's token, so Katib's rule fails; the extension sees the T form and normalises.
    ("2021-12-02T14:27:50.000035161+09:00\tloss=1", "2021-12-02T05:27:50.000035161Z"),
    ("2024-03-04T01:55:08Z\tloss=1 acc=2", "2024-03-04T01:55:08Z"),
    # No space at all: Katib keeps its default; the extension accepts a timestamp ending the line.
    ("2024-03-04T01:55:08.500+01:00", "2024-03-04T00:55:08.5Z"),
    # Python logging's default asctime, no zone = UTC.
    ("2024-03-04 01:55:08,123 INFO loss=1", "2024-03-04T01:55:08.123Z"),
    ("2024-03-04 01:55:08 loss=1", "2024-03-04T01:55:08Z"),
    ("2024-03-04 1:55:08 loss=1", "2024-03-04T01:55:08Z"),
    ("2024-03-04 01:55:08.100000000 loss=1", "2024-03-04T01:55:08.1Z"),
    ("2024-03-04 01:55:08.000000001 loss=1", "2024-03-04T01:55:08.000000001Z"),
    ("2024-03-04 01:55:08.000 loss=1", "2024-03-04T01:55:08Z"),
    ("2024-03-04 01:55:08.5", "2024-03-04T01:55:08.5Z"),
    # T form without zone: UTC, normalised.
    ("2024-03-04T01:55:08.120 loss=1", "2024-03-04T01:55:08.12Z"),
    ("2024-03-04T01:55:08,5 loss=1", "2024-03-04T01:55:08.5Z"),
    # Zones: Z, ±hh:mm, ±hhmm; one space before a numeric zone (Go's time.Time.String form).
    ("2024-03-04 01:55:08Z loss=1", "2024-03-04T01:55:08Z"),
    ("2024-03-04 01:55:08+09:00 loss=1", "2024-03-03T16:55:08Z"),
    ("2024-03-04 01:55:08-0130 loss=1", "2024-03-04T03:25:08Z"),
    ("2024-03-04T01:55:08+0900 loss=1", "2024-03-03T16:55:08Z"),
    ("2024-03-04 01:55:08.25 +0000 UTC loss=1", "2024-03-04T01:55:08.25Z"),
    ("2024-03-04 01:55:08.25 -05:00 loss=1", "2024-03-04T06:55:08.25Z"),
    ("2024-03-04 01:55:08 -05 loss=1", "2024-03-04T01:55:08Z"),  # not a zone: the number is text
    ("2024-03-01 00:30:00+01:00 loss=1", "2024-02-29T23:30:00Z"),
    # Brackets: Katib-valid inside kept verbatim, extended forms normalised.
    ("[2024-03-04 01:55:08,123] INFO loss=1", "2024-03-04T01:55:08.123Z"),
    ("[2024-03-04T01:55:08.5+09:00] loss=1", "2024-03-04T01:55:08.5+09:00"),
    ("[2024-03-04T01:55:08] loss=1", "2024-03-04T01:55:08Z"),
    ("[2024-03-04 01:55:08 +0100]loss=1", "2024-03-04T00:55:08Z"),
    ("[2024-03-04T01:55:08,000000000Z]", "2024-03-04T01:55:08,000000000Z"),
    ("[2024-03-04 01:55:08] [x", "2024-03-04T01:55:08Z"),  # anything may follow the `]`
]
NO_TIMESTAMP = [
    "",
    "epoch 1 loss=0.5",
    " 2024-03-04T01:55:08Z loss=1",  # not at the start
    "INFO 2024-03-04 01:55:08 loss=1",
    "1 loss=0.5",
    "2024-03-04 loss=1",
    "2024-02-30 01:55:08 loss=1",  # no such day
    "2023-02-29T01:55:08 loss=1",
    "1900-02-29 01:55:08 loss=1",
    "2024-03-04 01:55:60 loss=1",
    "2024-03-04 24:00:00 loss=1",
    "2024-03-04 01:55:08.1234567891 loss=1",  # more than 9 fraction digits in our forms
    "2024-03-04 01:55:08. loss=1",
    "2024-03-04 01:55:08loss=1",  # must be followed by whitespace or end
    "2024-03-04 01:55:08,123:INFO",
    "2024-03-04 01:55:08+25:00 loss=1",
    "2024-03-04t01:55:08 loss=1",
    "[2024-03-04 01:55:08,123 INFO loss=1",  # unclosed bracket
    "[ 2024-03-04 01:55:08] loss=1",
    "[] loss=1",
    "[epoch 1] loss=1",
    "0000-01-01 00:30:00+01:00 loss=1",  # would be year -1 in UTC
    "9999-12-31 23:30:00-01:00 loss=1",  # would be year 10000
]


@pytest.mark.parametrize(("line", "expected"), LINES)
def test_line_timestamp(line: str, expected: str) -> None:
    assert line_timestamp(line) == expected
    assert is_go_rfc3339nano(expected)


@pytest.mark.parametrize("line", NO_TIMESTAMP)
def test_line_without_timestamp(line: str) -> None:
    assert line_timestamp(line) is None


# --- JSON "timestamp" values (DESIGN difference 2) --------------------------------------------------

JSON_VALUES: list[tuple[object, str | None]] = [
    # The two values of Katib's unit test: we keep the real fraction.
    (1638422847.28721, "2021-12-02T05:27:27.28721Z"),
    (1638422847.287801, "2021-12-02T05:27:27.287801Z"),
    (1638422847, "2021-12-02T05:27:27Z"),
    (1638422847.0, "2021-12-02T05:27:27Z"),
    (1.5, "1970-01-01T00:00:01.5Z"),
    (0.1, "1970-01-01T00:00:00.1Z"),
    (-5.5, "1969-12-31T23:59:54.5Z"),
    (-1, "1969-12-31T23:59:59Z"),
    (1e-9, "1970-01-01T00:00:00.000000001Z"),
    (1.5e-10, "1970-01-01T00:00:00Z"),  # below a nanosecond: floored
    (1e9, "2001-09-09T01:46:40Z"),
    (-62135596800, "0001-01-01T00:00:00Z"),
    (253402300799, "9999-12-31T23:59:59Z"),
    (-62135596801, None),  # year 0
    (253402300800, None),  # year 10000
    (1e300, None),
    (10**400, None),
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (True, None),
    (False, None),
    (None, None),
    ({}, None),
    ([1638422847], None),
    # Strings: the line recogniser applied to the whole string.
    ("2021-12-02T14:27:50.000035161+09:00", "2021-12-02T14:27:50.000035161+09:00"),
    ("2024-03-04 01:55:08,123", "2024-03-04T01:55:08.123Z"),
    ("2024-03-04T01:55:08", "2024-03-04T01:55:08Z"),
    ("2024-03-04T01:55:08+0900", "2024-03-03T16:55:08Z"),
    ("[2024-03-04T01:55:08+09:00]", "2024-03-04T01:55:08+09:00"),
    ("[2024-03-04 01:55:08]", "2024-03-04T01:55:08Z"),
    ("", None),
    ("1638422847", None),
    ("2024-03-04T01:55:08Z loss", None),
    ("2024-03-04T01:55:08Z\t", None),
    (" 2024-03-04T01:55:08Z", None),
    ("[2024-03-04T01:55:08Z] ", None),
    ("2024-02-30T01:55:08Z", None),
]


@pytest.mark.parametrize(("value", "expected"), JSON_VALUES, ids=repr)
def test_json_timestamp(value: object, expected: str | None) -> None:
    assert json_timestamp(value) == expected


# --- TensorFlow wall times --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall_time", "expected"),
    [
        (1700000000.123456789, "2023-11-14T22:13:20.123457Z"),
        (1700000000.5, "2023-11-14T22:13:20.5Z"),
        (1700000000.0, "2023-11-14T22:13:20Z"),
        (1700000000, "2023-11-14T22:13:20Z"),
        (1700000000.0000004, "2023-11-14T22:13:20Z"),
        (1700000000.9999996, "2023-11-14T22:13:21Z"),
        (0.0000015, "1970-01-01T00:00:00.000002Z"),  # half to even at the µs
        (0.0000025, "1970-01-01T00:00:00.000002Z"),
        (-0.25, "1969-12-31T23:59:59.75Z"),
    ],
)
def test_unix_to_rfc3339_microseconds(wall_time: float, expected: str) -> None:
    assert unix_to_rfc3339(wall_time) == expected


@pytest.mark.parametrize(
    ("wall_time", "message"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (1e300, "outside the years 0001-9999"),
        (253402300799.9999996, "outside the years 0001-9999"),  # rounds into year 10000
        (-62135596801.0, "outside the years 0001-9999"),
    ],
)
def test_unix_to_rfc3339_rejects_unwritable_times(wall_time: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unix_to_rfc3339(wall_time)


# --- properties -------------------------------------------------------------------------------------

offsets = st.integers(min_value=-24 * 60, max_value=24 * 60)
fractions = st.text(alphabet="0123456789", max_size=12)


def _go_text(moment: dt.datetime, fraction: str, comma: bool, offset_minutes: int | None) -> str:
    """Write a Go-valid RFC3339Nano text by hand (offset None means `Z`)."""
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    clock = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    frac = ("," if comma else ".") + fraction if fraction else ""
    if offset_minutes is None:
        zone = "Z"
    else:
        hours, minutes = divmod(abs(offset_minutes), 60)
        zone = f"{'-' if offset_minutes < 0 else '+'}{hours:02d}:{minutes:02d}"
    return f"{date}T{clock}{frac}{zone}"


def _expected_utc(moment: dt.datetime, fraction: str, offset_minutes: int | None) -> tuple[int, int, str]:
    """(Unix seconds, nanos, UTC text) computed with `datetime`, independently of the module."""
    utc = moment - dt.timedelta(minutes=offset_minutes or 0)
    seconds = (moment - EPOCH) // ONE_SECOND - (offset_minutes or 0) * 60
    nanos_text = fraction[:9].ljust(9, "0")
    frac = "." + nanos_text.rstrip("0") if nanos_text.strip("0") else ""
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc:%H:%M:%S}{frac}Z"
    return seconds, int(nanos_text), text


moments = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)).map(
    lambda moment: moment.replace(microsecond=0)
)


@settings(max_examples=100, deadline=None)
@given(moments, fractions, st.booleans(), st.none() | offsets)
def test_parse_then_format_matches_datetime(
    moment: dt.datetime, fraction: str, comma: bool, offset: int | None
) -> None:
    text = _go_text(moment, fraction, comma, offset)
    assert is_go_rfc3339nano(text)
    instant = parse_rfc3339(text)
    assert instant is not None
    seconds, nanos, utc_text = _expected_utc(moment, fraction, offset)
    assert instant == Instant(seconds, nanos)
    assert format_rfc3339(instant) == utc_text
    assert parse_rfc3339(utc_text) == instant  # the normalised text names the same instant


Stamp = tuple[dt.datetime, str, int]
stamps = st.tuples(moments, fractions, offsets)


@settings(max_examples=100, deadline=None)
@given(stamps, stamps)
def test_instant_order_is_time_order(a: Stamp, b: Stamp) -> None:
    first = parse_rfc3339(_go_text(a[0], a[1], False, a[2]))
    second = parse_rfc3339(_go_text(b[0], b[1], True, b[2]))
    assert first is not None and second is not None
    real_first, real_second = _expected_utc(*a)[:2], _expected_utc(*b)[:2]
    assert (first < second) == (real_first < real_second)
    assert (first == second) == (real_first == real_second)


def _digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=low, max_size=high)


def _mostly(valid: st.SearchStrategy[str], miss: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`valid` seven times in eight, else `miss`: whole texts are then valid often enough to matter."""
    return st.integers(0, 7).flatmap(lambda pick: miss if pick == 0 else valid)


def _number(low: int, high: int, width: int = 2) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda number: f"{number:0{width}d}")


_fraction_piece = st.sampled_from(["", ".", ","]).flatmap(
    lambda point: st.just("") if not point else _digits(1, 11).map(point.__add__)
)
_offset_piece = st.tuples(st.sampled_from("+-"), _number(0, 25), st.just(":"), _number(0, 61)).map("".join)
_zone_piece = st.just("Z") | _offset_piece

# Texts around the grammar: mostly well formed (with random day-of-month and offset ranges), sometimes
# with a wrong width, case, separator, zone or trailing character in one or more places.
timestamp_like = st.tuples(
    _mostly(_number(0, 9999, 4), st.text(alphabet="0123456789+-", min_size=3, max_size=5)),
    _mostly(st.just("-"), st.sampled_from(["", "/", "--"])),
    _mostly(_number(1, 12), _digits(1, 3)),
    st.just("-"),
    _mostly(_number(1, 31), _digits(1, 3)),
    _mostly(st.just("T"), st.sampled_from(["t", " ", ""])),
    _mostly(_number(0, 23) | _number(0, 9, 1), _digits(1, 3)),
    st.just(":"),
    _mostly(_number(0, 59), _digits(1, 3)),
    st.just(":"),
    _mostly(_number(0, 59), _digits(1, 3)),
    _mostly(_fraction_piece, st.sampled_from([".", ",", ".x"])),
    _mostly(_zone_piece, st.sampled_from(["", "z", "+0900", "+9:00", "+09:0", "-", "UTC"])),
    _mostly(st.just(""), st.sampled_from([" ", "\r", "\n", "x"])),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(timestamp_like | st.text(max_size=40))
def test_grammar_agrees_with_gos_parse_algorithm(text: str) -> None:
    assert is_go_rfc3339nano(text) == _go_accepts(text)


@settings(max_examples=100, deadline=None)
@given(moments, st.sampled_from("0123456789"), st.integers(0, 34), st.sampled_from(["-", "+", ":", "x", "9"]))
def test_grammar_agrees_on_one_char_changes(moment: dt.datetime, digit: str, at: int, other: str) -> None:
    text = _go_text(moment, "5", False, 90)
    for replacement in (digit, other):
        mutated = text[:at] + replacement + text[at + 1 :]
        assert is_go_rfc3339nano(mutated) == _go_accepts(mutated), mutated


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60) | timestamp_like.map(lambda t: t + " x=1") | timestamp_like.map("[{}]".format))
def test_line_timestamp_never_raises_and_is_always_go_valid(line: str) -> None:
    found = line_timestamp(line)
    assert found is None or is_go_rfc3339nano(found)
    whole = json_timestamp(line)
    assert whole is None or is_go_rfc3339nano(whole)


@settings(max_examples=100, deadline=None)
@given(
    moments,
    st.text(alphabet="0123456789", max_size=9),
    st.sampled_from([".", ","]),
    st.sampled_from(["T", " "]),
    st.sampled_from(["", "Z", "+hh:mm", "-hhmm", " +hhmm", " -hh:mm"]),
    st.integers(0, 23 * 60 + 59),
    st.booleans(),
)
def test_extended_forms_normalise_like_datetime(
    moment: dt.datetime, fraction: str, point: str, separator: str, zone: str, minutes: int, bracket: bool
) -> None:
    hours, mins = divmod(minutes, 60)
    zone_text = zone.replace("hh", f"{hours:02d}").replace("mm", f"{mins:02d}")
    offset = None if zone in ("", "Z") else (minutes if "+" in zone else -minutes)
    stamp = f"{moment:%Y-%m-%d}{separator}{moment:%H:%M:%S}{point + fraction if fraction else ''}{zone_text}"
    stamp = f"{moment.year:04d}{stamp[stamp.index('-') :]}"  # strftime does not pad years below 1000
    line = f"[{stamp}] loss=1" if bracket else f"{stamp}\tloss=1"
    utc_text = _expected_utc(moment, fraction, offset)[2]
    found = line_timestamp(line)
    if bracket and is_go_rfc3339nano(stamp):
        assert found == stamp  # Katib-valid inside brackets stays verbatim
    else:
        assert found == utc_text
    assert found is not None and is_go_rfc3339nano(found)
    assert json_timestamp(stamp) in (stamp, utc_text)


@settings(max_examples=100, deadline=None)
@given(st.integers(-62_135_596_800, 253_402_300_798), st.text(alphabet="0123456789", min_size=1, max_size=6))
def test_json_numbers_keep_their_written_fraction(seconds: int, fraction: str) -> None:
    fraction = fraction.rstrip("0")
    assume(fraction)
    text = f"{seconds}.{fraction}" if seconds >= 0 else f"-{-seconds - 1}.{fraction}"
    value = float(text)
    assume(repr(value) == text)  # only values whose shortest repr is what was written
    whole = EPOCH + dt.timedelta(seconds=seconds)
    # A negative text -N.f means the second -(N+1) plus (1 - 0.f).
    frac = fraction if seconds >= 0 else str(Decimal(1) - Decimal("0." + fraction))[2:]
    expected = f"{whole.year:04d}-{whole:%m-%dT%H:%M:%S}.{frac}Z"
    assert json_timestamp(value) == expected


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=-62_135_596_800, max_value=253_402_300_799))
def test_wall_times_round_to_the_nearest_microsecond(wall_time: float) -> None:
    instant = parse_rfc3339(unix_to_rfc3339(wall_time))
    assert instant is not None
    assert instant.nanos % 1000 == 0
    written = Decimal(instant.seconds) + Decimal(instant.nanos) / 10**9
    assert abs(written - Decimal(repr(wall_time))) <= Decimal("0.0000005")
