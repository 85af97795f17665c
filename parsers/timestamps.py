"""Timestamp recognition and formatting for every source: Katib's RFC3339Nano rule plus our lenient forms.

The text and JSON parsers ask this module which time a line or record carries; the db-manager asks it to
validate, order and store `time_stamp` strings. Stdlib only, no `datetime` arithmetic on the hot path: an
`Instant` is plain Unix seconds plus nanoseconds, so years 0000 and offsets up to `+24:00` (both legal in
Go) never overflow Python's `datetime` range.

Rules (DESIGN difference 5, reference §2.4, §2.5, §1.5, §8.1):

- Katib's rule comes first: the token before the first space, if Go's `time.Parse(time.RFC3339Nano, ...)`
  accepts it, is the time stamp, kept verbatim.
- Our extensions, recognised at the start of a line and normalised to UTC RFC3339 (Go's RFC3339Nano
  output: fraction kept, trailing zeros trimmed, `Z`):
  `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`, an optional `.`/`,` fraction of 1-9 digits, an optional
  zone `Z`, `±hh:mm` or `±hhmm`; no zone means UTC. Either form may sit inside `[...]` at line start,
  where a Katib-valid token is kept verbatim (without the brackets).
- Decisions where the brief left a choice:
  * A numeric zone may be preceded by ONE space (`2024-03-04 01:55:08.5 +0100`), because Go's own
    `time.Time.String()` writes times that way; `Z` must be attached.
  * A Katib-valid token followed by a TAB fails Katib's rule (the tab is part of the space-split token)
    but the extension rule then sees a timestamp at line start followed by whitespace: it is normalised.
  * The hour has 1 or 2 digits in every form, as in Go's grammar.
  * A normalised result must be a year 0000-9999 (else it would not be valid RFC3339 for Katib):
    otherwise the line has no time stamp.
  * JSON numbers with more than 9 fractional digits are floored to the nanosecond.

Cost per call, CPython 3.11 on the shared 2-core build machine at load ~1 (under load 6 all figures
roughly tripled), measured with
`python -m timeit -s 'from katib_metrics.parsers.timestamps import line_timestamp as f' 'f("<line>")'`:
a line starting with a letter → None in ~0.12-0.17 µs (most of it the call itself); a Katib-valid token
(`2021-12-02T14:27:50.000035161+09:00 loss=1`) ~1.4-1.7 µs; a Python logging asctime line, normalised,
~2.5 µs; a digit-led line without a time stamp (`1 loss=0.5`) ~0.8 µs. Day-of-month validity, day numbers
and UTC date texts are LRU-cached per date, since a log repeats the same few dates.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

__all__ = [
    "Instant",
    "all_go_rfc3339nano",
    "format_rfc3339",
    "is_go_rfc3339nano",
    "json_timestamp",
    "line_timestamp",
    "parse_rfc3339",
    "to_storage",
    "unix_to_rfc3339",
]

_NANOS_PER_SECOND = 1_000_000_000
_SECONDS_PER_DAY = 86_400

_DATE = r"(?P<y>[0-9]{4})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])"
_CLOCK = r"(?P<h>[01]?[0-9]|2[0-3]):(?P<mi>[0-5][0-9]):(?P<s>[0-5][0-9])"
# Go checks offset hour <= 24 and minute <= 60 (its range test uses `>`), so `+24:00` and `+09:60` pass.
_OFFSET_HOUR = r"(?P<oh>[01][0-9]|2[0-4])"
_OFFSET_MINUTE = r"(?P<om>[0-5][0-9]|60)"

# Go's RFC3339Nano grammar exactly (§8.1); day-of-month against month and leap year is checked apart.
_GO_RFC3339NANO = re.compile(
    rf"{_DATE}T{_CLOCK}(?:[.,](?P<f>[0-9]+))?(?:Z|(?P<sign>[+-]){_OFFSET_HOUR}:{_OFFSET_MINUTE})",
    re.ASCII,
)

# Our lenient forms: space or `T`, 1-9 fraction digits, zone optional, `±hhmm` allowed, one space before a
# numeric zone allowed.
_EXTENDED = (
    rf"{_DATE}[T ]{_CLOCK}(?:[.,](?P<f>[0-9]{{1,9}}))?"
    rf"(?:Z|[ ]?(?P<sign>[+-]){_OFFSET_HOUR}:?{_OFFSET_MINUTE})?"
)
_EXTENDED_AT_LINE_START = re.compile(_EXTENDED + r"(?=[\t\n\v\f\r ]|\Z)", re.ASCII)
_EXTENDED_WHOLE = re.compile(_EXTENDED, re.ASCII)

_CAN_START_TIMESTAMP = frozenset("0123456789[")
_MICROSECOND = Decimal("0.000001")


@dataclass(frozen=True, order=True, slots=True)
class Instant:
    """A point in time with nanosecond precision; field order makes the dataclass order the time order."""

    seconds: int
    """Unix seconds, negative before 1970 (year 0001 is about -62e9)."""
    nanos: int
    """Nanoseconds within the second, 0..999_999_999."""

    def __post_init__(self) -> None:
        if not 0 <= self.nanos < _NANOS_PER_SECOND:
            raise ValueError(f"Instant nanos must be in 0..999999999, got {self.nanos}")


# --- calendar arithmetic (proleptic Gregorian, any year; Howard Hinnant's days_from_civil) -------------


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@functools.lru_cache(maxsize=4096)
def _date_exists(date: str) -> bool:
    """`YYYY-MM-DD` (already shape-checked) names a real day; cached because logs repeat their dates."""
    year, month, day = int(date[0:4]), int(date[5:7]), int(date[8:10])
    last = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]
    return day <= last


@functools.lru_cache(maxsize=4096)
def _day_number(date: str) -> int | None:
    """Days since 1970-01-01 of a shape-checked `YYYY-MM-DD`, None if that day does not exist."""
    if not _date_exists(date):
        return None
    return _days_from_civil(int(date[0:4]), int(date[5:7]), int(date[8:10]))


@functools.lru_cache(maxsize=4096)
def _date_text(days: int) -> str:
    """`YYYY-MM-DD` of a day number, years outside 0000..9999 written as Go does (`-0001`, `10000`)."""
    year, month, day = _civil_from_days(days)
    year_text = f"{year:04d}" if year >= 0 else f"-{-year:04d}"
    return f"{year_text}-{month:02d}-{day:02d}"


# Years 0000..9999 in UTC: what RFC3339 can write and Go can read back.
_FIRST_GO_DAY = _days_from_civil(0, 1, 1)
_LAST_GO_DAY = _days_from_civil(10_000, 1, 1) - 1
_LAST_GO_SECOND = (_LAST_GO_DAY + 1) * _SECONDS_PER_DAY - 1
# Years 0001..9999: the range accepted for numeric (Unix) time stamps.
_FIRST_CE_SECOND = _days_from_civil(1, 1, 1) * _SECONDS_PER_DAY


# --- Go's RFC3339Nano --------------------------------------------------------------------------------


def is_go_rfc3339nano(text: str) -> bool:
    """True iff Go's `time.Parse(time.RFC3339Nano, text)` accepts `text` (reference §8.1)."""
    # Days 01-28 exist in every month; only later days need the calendar.
    return _GO_RFC3339NANO.fullmatch(text) is not None and (text[8:10] <= "28" or _date_exists(text[:10]))


_GO_RFC3339NANO_LINES = re.compile(
    "(?:{0}\n)*{0}".format(re.sub(r"\?P<\w+>", "?:", _GO_RFC3339NANO.pattern)), re.ASCII
)


def all_go_rfc3339nano(texts: list[str]) -> bool:
    """`all(map(is_go_rfc3339nano, texts))` for many texts at once: one regex pass, each late date once."""
    joined = "\n".join(texts)
    if not texts or joined.count("\n") != len(texts) - 1 or not _GO_RFC3339NANO_LINES.fullmatch(joined):
        return False
    return all(_date_exists(date) for date in {text[:10] for text in texts if text[8:10] > "28"})


def _instant_from_match(match: re.Match[str]) -> Instant:
    days = _day_number(match.string[:10])
    assert days is not None  # the caller checked the day exists
    seconds = days * _SECONDS_PER_DAY + int(match["h"]) * 3600 + int(match["mi"]) * 60 + int(match["s"])
    if match["sign"]:
        offset = int(match["oh"]) * 3600 + int(match["om"]) * 60
        seconds += -offset if match["sign"] == "+" else offset
    fraction = match["f"]
    # Go truncates digits beyond the nanosecond.
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    return Instant(seconds, nanos)


def parse_rfc3339(text: str) -> Instant | None:
    """The instant a Go-valid RFC3339Nano text names (offset applied, digits past 9 truncated), else None."""
    if not is_go_rfc3339nano(text):
        return None
    match = _GO_RFC3339NANO.fullmatch(text)
    assert match is not None  # checked just above
    return _instant_from_match(match)


def format_rfc3339(instant: Instant) -> str:
    """UTC text as Go's `Format(time.RFC3339Nano)` writes it: `2024-03-04T01:55:08.12Z`, no `.0`, `Z`.

    Years outside 0000..9999 are written as Go writes them (`-0001`, `10000`).
    """
    days, rest = divmod(instant.seconds, _SECONDS_PER_DAY)
    fraction = f".{instant.nanos:09d}".rstrip("0") if instant.nanos else ""
    return _utc_text(days, rest, fraction)


def _utc_text(days: int, second_of_day: int, fraction: str) -> str:
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{_date_text(days)}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"


def to_storage(text: str) -> Instant | None:
    """The instant as Katib's MySQL `DATETIME(6)` keeps it: parsed, UTC, truncated to microseconds."""
    instant = parse_rfc3339(text)
    if instant is None:
        return None
    return Instant(instant.seconds, instant.nanos - instant.nanos % 1000)


# --- recognising time stamps in lines and records ----------------------------------------------------


def _normalised(match: re.Match[str] | None) -> str | None:
    """UTC RFC3339 text of an extended-form match; None for a day that does not exist or is out of range."""
    if match is None:
        return None
    date = match.string[match.start() : match.start() + 10]
    days = _day_number(date)
    if days is None:
        return None
    fraction = match["f"]
    # An offset is whole minutes, so the fraction's digits carry over unchanged.
    fraction = "." + fraction.rstrip("0") if fraction and fraction.strip("0") else ""
    sign = match["sign"]
    if not sign:  # already UTC: the date cannot move, only the hour may need its leading zero
        return f"{date}T{match['h']:0>2}:{match['mi']}:{match['s']}{fraction}Z"
    second_of_day = int(match["h"]) * 3600 + int(match["mi"]) * 60 + int(match["s"])
    offset = int(match["oh"]) * 3600 + int(match["om"]) * 60
    shift, second_of_day = divmod(second_of_day + (-offset if sign == "+" else offset), _SECONDS_PER_DAY)
    days += shift
    if not _FIRST_GO_DAY <= days <= _LAST_GO_DAY:
        return None
    return _utc_text(days, second_of_day, fraction)


def _bracketed(inner: str) -> str | None:
    """The time inside `[...]`: a Katib-valid token verbatim, else an extended form normalised."""
    if is_go_rfc3339nano(inner):
        return inner
    return _normalised(_EXTENDED_WHOLE.fullmatch(inner))


def line_timestamp(line: str) -> str | None:
    """The time stamp a text line carries (DESIGN difference 5), else None.

    Katib-valid first token → verbatim; extended forms at line start → normalised UTC; otherwise None
    (the caller substitutes Go's zero time or the read time).
    """
    if not line or line[0] not in _CAN_START_TIMESTAMP:
        return None
    if line[0] == "[":
        end = line.find("]", 1)
        return _bracketed(line[1:end]) if end > 0 else None
    space = line.find(" ")
    if space > 0 and is_go_rfc3339nano(token := line[:space]):
        return token
    return _normalised(_EXTENDED_AT_LINE_START.match(line))


def _whole_text_timestamp(text: str) -> str | None:
    if is_go_rfc3339nano(text):
        return text
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        return _bracketed(text[1:-1])
    return _normalised(_EXTENDED_WHOLE.fullmatch(text))


def _instant_from_number(value: int | float) -> Instant | None:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # repr gives the shortest digits that round-trip, so no binary noise reaches the fraction.
        exact = Decimal(repr(value))
    else:
        exact = Decimal(value)
    if not _FIRST_CE_SECOND <= exact < _LAST_GO_SECOND + 1:
        return None
    seconds = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    nanos = int(((exact - seconds) * _NANOS_PER_SECOND).to_integral_value(rounding=ROUND_FLOOR))
    return Instant(seconds, nanos)


def json_timestamp(value: object) -> str | None:
    """The time stamp of a JSON-lines record's `"timestamp"` value (DESIGN difference 2), else None.

    Strings: the text-line recogniser applied to the whole string. Numbers (not booleans): Unix seconds,
    written in UTC with their real fraction (`1638422847.28721` → `2021-12-02T05:27:27.28721Z`); NaN,
    infinities and values outside the years 0001-9999 give None. Anything else gives None.
    """
    if isinstance(value, str):
        return _whole_text_timestamp(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    instant = _instant_from_number(value)
    return None if instant is None else format_rfc3339(instant)


def unix_to_rfc3339(seconds: float) -> str:
    """A TensorFlow `wall_time` as UTC RFC3339 rounded to the nearest microsecond, trailing zeros trimmed.

    `1700000000.123456789` → `2023-11-14T22:13:20.123457Z`. Raises ValueError for NaN, infinities and
    times outside the years 0001-9999, naming the value.
    """
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"wall time {seconds!r} is not a finite number of seconds")
    exact = Decimal(repr(seconds)) if isinstance(seconds, float) else Decimal(seconds)
    # Checked before rounding too: quantize() fails on numbers longer than the decimal context allows.
    in_range = _FIRST_CE_SECOND <= exact < _LAST_GO_SECOND + 1
    micros = exact.quantize(_MICROSECOND, rounding=ROUND_HALF_EVEN) if in_range else exact
    if not in_range or micros > _LAST_GO_SECOND:
        raise ValueError(f"wall time {seconds!r} is outside the years 0001-9999")
    whole = int(micros.to_integral_value(rounding=ROUND_FLOOR))
    return format_rfc3339(Instant(whole, int((micros - whole) * _NANOS_PER_SECOND)))
