"""Katib's trial-controller reduction of an observation log to min / max / latest per metric (pure).

Reference §5.3: min and max over values Go's ParseFloat accepts (the original text is kept), latest by
time stamp with ties going to the later row, `unavailable` when a field has no value. The reducer is
streaming: memory is one small record per metric, whatever the number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter

from katib_metrics.parsers.model import UNAVAILABLE, CollectorSpec, MetricLog, MetricSummary
from katib_metrics.parsers.numbers import PLAIN_FLOAT as _PLAIN_FLOAT
from katib_metrics.parsers.numbers import parse_go_float, plain_floats
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
def _last_latest(stamps: list[str]) -> int | None:
    """Index of the last row with the latest stamp, when all stamps have one UTC shape (text order is time
    order, see `_not_after`); None when the rows need comparing one by one."""
    first = stamps[0]
    size = len(first)
    if size < 20 or first[-1] != "Z" or first[10] != "T" or first[13] != ":" or set(map(len, stamps)) != {size}:
        return None
    joined = "".join(stamps)  # equal lengths: a stride picks one position of every stamp
    if joined[10::size].strip("T") or joined[13::size].strip(":") or joined[size - 1 :: size].strip("Z") \
            or joined[19::size].strip(first[19]):
        return None
    return max(reversed(range(len(stamps))), key=stamps.__getitem__)


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
        rows = logs if isinstance(logs, list) else list(logs)
        if not rows:
            return
        stamps, names, texts = (list(map(_FIELDS[i], rows)) for i in range(3))
        metrics = self._metrics
        for name in dict.fromkeys(names):
            running = metrics.get(name)
            if running is None:
                if self._fixed:
                    continue
                running = metrics[name] = _Running()
            mine = list(map(name.__eq__, names))
            running.add_batch(list(compress(texts, mine)), list(compress(stamps, mine)))

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
