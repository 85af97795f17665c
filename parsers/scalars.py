"""Rows of float32 scalars kept as numbers: MetricLogs written out only when someone reads them (pure).

Event files hold numbers, and most of the cost of turning one into a `MetricLog` is writing its value and
its time stamp as text (shortest float32 text, RFC 3339 with microseconds). `ScalarRows` is a sequence
of MetricLogs like any list the parsers return, but holds the wall times and values as floats: iterating
it writes every row (once, in one batch), while `summaries()` gives the batch's min / max / latest per
metric from the numbers and writes only the few texts that win. `Reducer.add_all` takes that path, so a
command that prints only the summary table never writes a row.

Equivalence with reducing the written rows one by one (the module's tests compare the two): float32 →
shortest text → float64 is strictly increasing, so the first minimum and maximum are at the same rows;
the time-stamp text's order is the order of wall times rounded to microseconds (`StampFormatter`), so
the latest row is the last one whose rounded time is the largest. Batches holding a NaN or an infinite
value, or a wall time without a time stamp of its own, are summarised from their written rows instead.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import ge
from typing import Final, overload

from katib_metrics.parsers.model import ZERO_TIME, MetricLog
from katib_metrics.parsers.tfvalues import float32_text, float32_texts

__all__ = ["BatchSummary", "ScalarRows", "StampFormatter"]

_EPOCH: Final = datetime.datetime(1970, 1, 1)
_MIN_WALL_TIME: Final = -62_135_596_800.0  # 0001-01-01T00:00:00Z
_MAX_WALL_TIME: Final = 253_402_300_800.0  # 10000-01-01T00:00:00Z
# Wall times within this of the largest may round to the same microsecond (float64 spacing near 2**33 s is
# 2e-6 at most, well inside years 1-9999 the spacing is below 1e-6): candidates, checked exactly.
_SAME_MICROSECOND: Final = 4e-6
_new_log = tuple.__new__


class StampFormatter:
    """Wall time (float seconds) → `2023-11-14T22:13:20.123457Z`; remembers each second's text."""

    __slots__ = ("_prefixes",)

    def __init__(self) -> None:
        self._prefixes: dict[int, str] = {}

    def __call__(self, wall_time: float) -> str:
        return self.many([wall_time])[0]

    @staticmethod
    def has_stamp(wall_time: float) -> bool:
        """Whether the time has a stamp of its own (not NaN, infinite or outside years 1-9999)."""
        return _MIN_WALL_TIME <= wall_time < _MAX_WALL_TIME

    @staticmethod
    def microseconds(wall_time: float) -> int:
        """The time rounded as its stamp is written, in microseconds: the stamps' order is this order."""
        second = math.floor(wall_time)
        return second * 1_000_000 + round((wall_time - second) * 1e6)

    def many(self, wall_times: Sequence[float]) -> list[str]:
        """The time stamps of `wall_times`, in order (a loop with no calls in the common case)."""
        prefixes = self._prefixes
        if len(prefixes) > 4096:
            prefixes.clear()
        out: list[str] = []
        append = out.append
        low, high = _MIN_WALL_TIME, _MAX_WALL_TIME
        floor = math.floor
        for wall_time in wall_times:
            if not low <= wall_time < high:
                append(ZERO_TIME)  # NaN, infinite or outside years 1-9999: no usable time of its own
                continue
            second = floor(wall_time)
            micro = round((wall_time - second) * 1e6)  # the subtraction is exact; `wall_time * 1e6` is not
            if micro == 1_000_000:
                second, micro = second + 1, 0
            prefix = prefixes.get(second)
            if prefix is None:
                prefix = prefixes[second] = (_EPOCH + datetime.timedelta(seconds=second)).isoformat()
            if micro % 10:
                append(f"{prefix}.{micro:06d}Z")
            elif micro:
                append(f"{prefix}.{micro:06d}".rstrip("0") + "Z")
            else:
                append(prefix + "Z")
        return out


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """One metric's rows in one batch, reduced: what `Reducer` merges instead of the rows themselves."""

    name: str
    count: int
    min_text: str
    max_text: str
    latest: str
    latest_at: str


class ScalarRows(Sequence[MetricLog]):
    """Rows `(stamp of walls[i], name, text of values[i])` for each name in `keys[i]`, in that order."""

    __slots__ = ("_keys", "_rows", "_size", "_stamps", "_values", "_walls")

    def __init__(self, walls: list[float], keys: list[tuple[str, ...]], values: list[float],
                 stamps: StampFormatter) -> None:
        self._walls, self._keys, self._values, self._stamps = walls, keys, values, stamps
        distinct = set(keys)
        self._size = len(keys) if all(len(key) == 1 for key in distinct) else sum(map(len, keys))
        self._rows: list[MetricLog] | None = None

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> MetricLog: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[MetricLog]: ...

    def __getitem__(self, index: int | slice) -> MetricLog | Sequence[MetricLog]:
        return self.rows()[index]

    def __iter__(self) -> Iterator[MetricLog]:
        return iter(self.rows())

    def names(self) -> set[str]:
        """The metric names of the rows, without writing them."""
        return {name for key in set(self._keys) for name in key}

    def rows(self) -> list[MetricLog]:
        """Every row written out (once; the batch keeps them)."""
        if self._rows is None:
            self._rows = self._write()
        return self._rows

    def _write(self) -> list[MetricLog]:
        stamps = self._stamps.many(self._walls)
        texts = float32_texts(self._values)
        keys = self._keys
        if len(distinct := set(keys)) == 1 and len(key := next(iter(distinct))) == 1:
            return list(map(_new_log, repeat(MetricLog), zip(stamps, repeat(key[0]), texts)))
        return [_new_log(MetricLog, (stamp, name, text))
                for stamp, key, text in zip(stamps, keys, texts, strict=True) for name in key]

    def summaries(self) -> list[BatchSummary] | None:
        """Per metric, in order of first appearance, the batch reduced; None when only the rows can tell."""
        values, walls = self._values, self._walls
        if not values:
            return []
        low, high = min(values), max(values)
        latest_wall = max(walls)
        # NaN makes min()/max() order-dependent and is ignored by the reducer's comparisons; infinities are
        # not counted; a time stamp of ZERO_TIME sorts apart: rare, and the rows handle them exactly.
        if not (math.isfinite(low) and math.isfinite(high) and StampFormatter.has_stamp(min(walls))
                and StampFormatter.has_stamp(latest_wall)) or any(map(math.isnan, values)):
            return None
        if any(map(math.isnan, walls)):
            return None
        out: list[BatchSummary] = []
        for name, rows in self._by_name():
            picked_values = values if rows is None else list(compress(values, rows))
            picked_walls = walls if rows is None else list(compress(walls, rows))
            out.append(self._summary(name, picked_values, picked_walls))
        return out

    def _by_name(self) -> Iterator[tuple[str, list[bool] | None]]:
        """Each name with the mask of its rows (None: every row)."""
        keys = self._keys
        distinct = list(dict.fromkeys(keys))
        if len(distinct) == 1:
            for name in distinct[0]:
                yield name, None
            return
        masks = {key: list(map(key.__eq__, keys)) for key in distinct}
        for name in dict.fromkeys(name for key in distinct for name in key):
            holding = [masks[key] for key in distinct if name in key]
            mask = holding[0] if len(holding) == 1 else list(map(any, zip(*holding, strict=True)))
            yield name, mask

    def _summary(self, name: str, values: list[float], walls: list[float]) -> BatchSummary:
        low = values.index(min(values))
        high = values.index(max(values))
        last = _last_latest(walls)
        return BatchSummary(name, len(values), float32_text(values[low]), float32_text(values[high]),
                            float32_text(values[last]), self._stamps(walls[last]))


def _last_latest(walls: list[float]) -> int:
    """The last index among those whose time, rounded as its stamp is, is the largest."""
    top = max(walls)
    rounded = StampFormatter.microseconds(top)
    near = list(compress(range(len(walls)), map(ge, walls, repeat(top - _SAME_MICROSECOND))))
    return next(index for index in reversed(near) if StampFormatter.microseconds(walls[index]) == rounded)
