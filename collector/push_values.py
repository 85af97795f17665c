"""Push mode's rows: metric values checked as Katib's controller reads them, stamped in strictly increasing µs.

Katib's SDK stamps a report with whole seconds, so two reports in one second tie and `latest` falls back
on insertion order; it checks values with Python's `float()` and then sends `str(value)`, which Katib's
controller parses with Go's `strconv.ParseFloat` (`" 1"`, `"True"`, `"1e400"` pass the first and fail the
second). Here every report gets its own microsecond UTC stamp, later than the process's previous one, and
a value is accepted only when the text sent is a number for the controller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.timestamps import Instant, format_rfc3339

__all__ = ["PushError", "Stamper", "metric_rows", "names_of", "value_text"]


class PushError(RuntimeError):
    """Push mode could not report: bad metrics, or the db-manager did not store them (Katib raises RuntimeError)."""


class Stamper:
    """RFC3339 UTC time stamps with six fraction digits, strictly increasing across the threads of a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held the parent's at the fork)."""
        self._lock = threading.Lock()

    def next_micros(self) -> int:
        """Microseconds since the epoch: now, or one more than the last stamp if the clock has not moved on."""
        with self._lock:
            self._last = max(time.time_ns() // 1000, self._last + 1)
            return self._last

    def next(self) -> str:
        return format_micros(self.next_micros())


def format_micros(micros: int) -> str:
    """`2026-05-01T10:00:00.123400Z`: always six digits, so stamps of one writer also sort as text."""
    seconds, fraction = divmod(micros, 1_000_000)
    text = format_rfc3339(Instant(seconds, 0))
    return f"{text[:-1]}.{fraction:06d}Z"


def value_text(name: str, value: Any) -> str:
    """The text Katib's SDK would send (`str(value)`), else the float's text for number-like objects whose
    `str()` is not a number (a 0-d tensor prints `tensor(0.5)`); raises PushError for anything else."""
    if isinstance(value, bool):
        raise PushError(f"metric {name!r}: {value!r} is a boolean, not a number; report 1 or 0 if you mean that")
    text = value if isinstance(value, str) else str(value)
    if parse_go_float(text) is not None:
        return text
    if not isinstance(value, str | bytes):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is not None:
            return repr(number)  # "nan" and "inf" included: Go's ParseFloat reads both
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise PushError(
        f"metric {name!r}: {shown!r} is not a number as Katib's controller reads it (Go's strconv.ParseFloat: "
        "no spaces, no values beyond float64's range); report a float, an int or a numeric string"
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def metric_rows(metrics: Mapping[str, Any], stamp: str) -> list[MetricLog]:
    """One row per metric, all with `stamp` (one report is one moment, as in Katib's SDK)."""
    if not isinstance(metrics, Mapping):
        raise PushError(f"metrics must be a dict of name to number, got {type(metrics).__name__}")
    if not metrics:
        raise PushError("no metrics to report: pass a dict of name to number, e.g. {'accuracy': 0.91}")
    rows = []
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise PushError(f"metric name {name!r} is not a non-empty string; name each metric as the "
                            "Experiment's objective does")
        if not name.isascii() and not _is_utf8(name):
            raise PushError(f"metric name {name!r} cannot be sent: gRPC strings are UTF-8 and it holds a lone "
                            "surrogate (a name decoded from non-UTF-8 bytes); name it with valid text")
        rows.append(MetricLog(stamp, name, value_text(name, value)))
    return rows


def names_of(rows: list[MetricLog]) -> str:
    """The rows' metric names for a message: at most 10, each cut to 60 characters (a name may be megabytes)."""
    names = sorted({row.name if len(row.name) <= 60 else row.name[:57] + "..." for row in rows})
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
