"""Counters every parser keeps about what it read, recorded and skipped (the observer observes itself)."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


class SkipReason(enum.StrEnum):
    """Why a value or a line was not turned into a MetricLog. Used as a Prometheus label value."""

    NOT_A_NUMBER = "not_a_number"
    REGEX_TIMEOUT = "regex_timeout"
    INVALID_JSON = "invalid_json"
    BAD_RECORD = "bad_record"
    LINE_TOO_LONG = "line_too_long"  # a JSON line over the line limit: it cannot be read in pieces
    LINE_CUT = "line_cut"  # a long text line cut where a value might straddle the cut


@dataclass(frozen=True, slots=True)
class Skipped:
    """One skipped item: `where` is a 1-based line number (or a record offset for binary inputs)."""

    where: int
    reason: SkipReason
    detail: str


SkipSink = Callable[[Skipped], None]
NoticeSink = Callable[[int, str], None]
"""Told (line number, message) about a value that was recorded but looks wrong (e.g. a number cut short)."""


@dataclass
class ParseStats:
    """Running totals of one parse; sources add lines, parsers add values and skips."""

    lines: int = 0
    values: Counter[str] = field(default_factory=Counter)
    skipped: Counter[SkipReason] = field(default_factory=Counter)
    first_skips: list[Skipped] = field(default_factory=list)
    keep_skips: int = 20

    def record_skip(self, skip: Skipped) -> None:
        self.skipped[skip.reason] += 1
        if len(self.first_skips) < self.keep_skips:
            self.first_skips.append(skip)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def report_skip(skip: Skipped, stats: ParseStats | None, on_skip: SkipSink | None) -> None:
    """Count a skipped item in `stats` (if any) and hand it to the caller's callback (if any)."""
    if stats is not None:
        stats.record_skip(skip)
    if on_skip is not None:
        on_skip(skip)


def note_skip(stats: ParseStats, on_skip: SkipSink | None, where: int, reason: SkipReason, detail: str) -> None:
    """`report_skip` for a skip described by its parts."""
    report_skip(Skipped(where, reason, detail), stats, on_skip)
