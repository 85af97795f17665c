"""Katib's trial-controller reduction of an observation log to min / max / latest per metric (pure).

Reference §5.3: min and max over values Go's ParseFloat accepts (the original text is kept), latest by
time stamp with ties going to the later row, `unavailable` when a field has no value. The reducer is
streaming: memory is one small record per metric, whatever the number of rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import eq, itemgetter

from katib_metrics.parsers.model import UNAVAILABLE, CollectorSpec, MetricLog, MetricSummary
from katib_metrics.parsers.numbers import PLAIN_FLOAT as _PLAIN_FLOAT
from katib_metrics.parsers.numbers import parse_go_float, plain_floats
from katib_metrics.parsers.scalars import BatchSummary, ScalarRows
from katib_metrics.parsers.timestamps import Instant, parse_rfc3339

__all__ = ["Reducer", "reduce_logs"]

# Rows whose time stamp does not parse (Katib's controller would fail the whole reconcile) sort first.
_BEFORE_EVERYTHING = Instant(-(1 << 62), 0)
_INFINITIES = (math.inf, -math.inf)


def _not_after(a: str, b: str) -> bool:
    """Katib's `!a.After(b)` for two time stamp texts; unparsable stamps sort before everything."""
    if a == b:
        return True
    # Same-shaped UTC stamps (`YYYY-MM-DDTHH:MM:SS[.f…]Z`, same length) compare as text: no parsing.
    if len(a) == len(b) > 19 and a[-1] == b[-1] == "Z" and a[10] == b[10] == "T" and a[13] == b[13] == ":" \
            and a[19] == b[19]:
        return a <= b
    return not (parse_rfc3339(a) or _BEFORE_EVERYTHING) > (parse_rfc3339(b) or _BEFORE_EVERYTHING)


def _value_of(text: str) -> float | None:
    if _PLAIN_FLOAT.fullmatch(text):
        value = float(text)
        return None if value in _INFINITIES else value
    return parse_go_float(text)


@dataclass(slots=True)
class _Running:
    min_text: str = UNAVAILABLE
    max_text: str = UNAVAILABLE
    min_value: float = 0.0
    max_value: float = 0.0
    latest: str = UNAVAILABLE
    latest_at: str | None = None
    count: int = 0

    def add(self, value_text: str, at: str) -> None:
        value = _value_of(value_text)
        if value is not None:
            self.count += 1
            if self.min_text == UNAVAILABLE:
                self.min_text = self.max_text = value_text
                self.min_value = self.max_value = value
            elif value < self.min_value:  # Go's comparisons: NaN never replaces, nor is replaced
                self.min_text, self.min_value = value_text, value
            elif value > self.max_value:
                self.max_text, self.max_value = value_text, value
        if self.latest_at is None or _not_after(self.latest_at, at):
            self.latest, self.latest_at = value_text, at

    def merge(self, part: BatchSummary) -> None:
        """A batch reduced on its own (`ScalarRows.summaries`): the state adding its rows one by one leaves."""
        low, high = _value_of(part.min_text), _value_of(part.max_text)
        if low is not None and high is not None:
            if self.min_text == UNAVAILABLE or low < self.min_value:
                self.min_text, self.min_value = part.min_text, low
            if self.max_text == UNAVAILABLE or high > self.max_value:
                self.max_text, self.max_value = part.max_text, high
            self.count += part.count
        if self.latest_at is None or _not_after(self.latest_at, part.latest_at):
            self.latest, self.latest_at = part.latest, part.latest_at

    def add_batch(self, texts: list[str], stamps: list[str]) -> None:
        """`add` for each pair in order, with the per-row work done by C builtins where the rows allow."""
        values = plain_floats(texts) if len(texts) > _SMALL_BATCH else None
        if values is None:
            for text, at in zip(texts, stamps, strict=True):
                self.add(text, at)
            return
        count = len(values)
        # The first minimum and the first maximum are what row-by-row strict comparisons keep.
        low = values.index(min(values))
        high = values.index(max(values))
        if self.min_text == UNAVAILABLE or values[low] < self.min_value:
            self.min_text, self.min_value = texts[low], values[low]
        if self.max_text == UNAVAILABLE or values[high] > self.max_value:
            self.max_text, self.max_value = texts[high], values[high]
        self.count += count
        last = _last_latest(stamps)
        if last is None:
            for text, at in zip(texts, stamps, strict=True):
                if self.latest_at is None or _not_after(self.latest_at, at):
                    self.latest, self.latest_at = text, at
        elif self.latest_at is None or _not_after(self.latest_at, stamps[last]):
            self.latest, self.latest_at = texts[last], stamps[last]


_SMALL_BATCH = 8


_FIELDS = [itemgetter(i) for i in range(3)]
# `_ONLY[i]`: the `bytes.translate` table that keeps code i as 1 and turns every other byte into 0.
_ONLY = [bytes(int(code == i) for code in range(256)) for i in range(256)]


def _last_latest(stamps: list[str]) -> int | None:
    """Index of the last row with the latest stamp, when all stamps have one UTC shape (text order is time
    order, see `_not_after`); None when the rows need comparing one by one."""
    first = stamps[0]
    size = len(first)
    if size < 20 or first[-1] != "Z" or first[10] != "T" or first[13] != ":" or set(map(len, stamps)) != {size}:
        return _last_canonical(stamps)
    joined = "".join(stamps)  # equal lengths: a stride picks one position of every stamp
    if joined[10::size].strip("T") or joined[13::size].strip(":") or joined[size - 1 :: size].strip("Z") \
            or joined[19::size].strip(first[19]):
        return None
    return len(stamps) - 1 - stamps[::-1].index(max(stamps))  # the last of the latest


def _last_canonical(stamps: list[str]) -> int | None:
    """`_last_latest` for UTC stamps of several lengths whose fraction has no trailing zero (event files'
    stamps): one instant has one text, and with `Z` read as a character below `.` and the digits, text
    order is time order (`:20Z` < `:20.5Z` < `:20.52Z` < `:20.6Z`)."""
    joined = "\n".join(stamps)
    if not _CANONICAL_UTC.fullmatch(joined):
        return None
    keys = joined.replace("Z", "!").split("\n")
    return max(reversed(range(len(keys))), key=keys.__getitem__)


_UTC_STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d*[1-9])?Z"
_CANONICAL_UTC = re.compile(rf"{_UTC_STAMP}(?:\n{_UTC_STAMP})*", re.ASCII)


class Reducer:
    """Accumulates MetricLogs; `summaries()` is the trial's `status.observation.metrics`."""

    def __init__(self, spec: CollectorSpec) -> None:
        self.spec = spec
        self._fixed = bool(spec.metric_names)
        self._metrics: dict[str, _Running] = {name: _Running() for name in spec.metric_names}

    def add(self, log: MetricLog) -> None:
        running = self._metrics.get(log.name)
        if running is None:
            if self._fixed:
                return
            running = self._metrics[log.name] = _Running()
        running.add(log.value, log.time_stamp)

    def add_all(self, logs: Iterable[MetricLog]) -> None:
        """Rows in order; each metric's rows are picked out with C builtins and reduced in one batch."""
        if isinstance(logs, ScalarRows) and (parts := logs.summaries()) is not None:
            for part in parts:
                if (running := self._running(part.name)) is not None:
                    running.merge(part)
            return
        rows = logs if isinstance(logs, list) else list(logs)
        if not rows:
            return
        stamps, names, texts = (list(map(_FIELDS[i], rows)) for i in range(3))
        distinct = list(dict.fromkeys(names))
        size = len(distinct)
        # Rows that repeat the names in one order (`a b a b ...`, a dense log's lines) are picked by stride.
        stride = len(names) % size == 0 and all(
            names[i::size].count(name) * size == len(names) for i, name in enumerate(distinct))
        # Else each row's name as one byte (one pass), and each name's mask a C-speed `translate` of those.
        code_of = {name: i for i, name in enumerate(distinct)}
        codes = b"" if stride or size > len(_ONLY) else bytes(map(code_of.__getitem__, names))
        for i, name in enumerate(distinct):
            if (running := self._running(name)) is None:
                continue
            if stride:
                running.add_batch(texts[i::size], stamps[i::size])
                continue
            mine = codes.translate(_ONLY[i]) if codes else list(map(eq, names, repeat(name)))
            running.add_batch(list(compress(texts, mine)), list(compress(stamps, mine)))

    def _running(self, name: str) -> _Running | None:
        """The running record of `name`; None for a name not requested (when names were)."""
        running = self._metrics.get(name)
        if running is None and not self._fixed:
            running = self._metrics[name] = _Running()
        return running

    def seen(self) -> set[str]:
        """The names that had at least one row (valid or not)."""
        return {name for name, running in self._metrics.items() if running.latest_at is not None}

    def summaries(self) -> list[MetricSummary]:
        """One entry per requested metric in `-m` order (or per metric found, in order of appearance)."""
        return [
            MetricSummary(name, r.min_text, r.max_text, r.latest, r.count, self.spec.strategy_for(name))
            for name, r in self._metrics.items()
        ]

    def summary(self, name: str) -> MetricSummary | None:
        return next((s for s in self.summaries() if s.name == name), None)


def reduce_logs(spec: CollectorSpec, logs: Iterable[MetricLog]) -> list[MetricSummary]:
    reducer = Reducer(spec)
    reducer.add_all(logs)
    return reducer.summaries()
