"""Lines of any length in bounded memory: a line longer than `WINDOW` is matched in overlapping windows.

A training's progress bar writes one line of `\\r`-separated redraws for a whole epoch (megabytes, no newline).
Such a line is never held whole. Its text is decoded as it comes and matched one window (`WINDOW` characters)
at a time: matches ending in the first part of the window are taken, and the next window starts where the first
match not taken starts (or `OVERLAP` characters before the window's end), one character of context before it.
So every match shorter than `OVERLAP` is found exactly as on the whole line, in the same order per filter, each
stamped with the time stamp of the line's start (judged on its first `STAMP_PREFIX` characters, which hold any
time stamp the line can have). With Katib's default filter, a stretch of `OVERLAP` characters that could all
belong to one match, where a window ends, is counted as `line_cut` and said. A JSON line cannot be read in
pieces: one over `WINDOW` bytes is skipped and counted as `line_too_long`.
"""

from __future__ import annotations

import codecs
import re
import time
from typing import TYPE_CHECKING

from katib_metrics.parsers.filters import DefaultFilter, Filter, FilterTimeout
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.stats import SkipReason
from katib_metrics.parsers.text import TextParser
from katib_metrics.parsers.timestamps import line_timestamp

if TYPE_CHECKING:
    from katib_metrics.parsers.lines import LineParser

__all__ = ["OVERLAP", "WINDOW", "LongLine"]

WINDOW = 1 << 20
OVERLAP = 64 << 10
STAMP_PREFIX = 4 << 10
# A character no default-filter match can hold (not a name character, a space, `=`, `+` or `.`).
_OUTSIDE_ANY_MATCH = re.compile(r"[^\w|\-\t\n\f\r =+.]", re.ASCII)


class LongLine:
    """One line handed over in pieces (`feed`) until it ends (`finish`); holds about one window of it."""

    def __init__(self, parser: LineParser, lineno: int, default_time: str) -> None:
        self.parser, self.lineno, self.default_time = parser, lineno, default_time
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._text = ""  # the part of the line still to match, from character `_base` of the line
        self._base = 0
        self._bytes = 0
        self._windows = 0
        self._dropped = False  # a JSON line over the limit, or a line out of matching time: only counted now
        self._stamp = default_time
        self._states: list[tuple[int, int]] = []  # per filter: where to search next, where its last match ended

    def feed(self, data: bytes) -> list[MetricLog]:
        """More of the line (no newline in `data`): the logs of any window it completes."""
        self._bytes += len(data)
        if self._dropped:
            return []
        text = self._decoder.decode(data)
        self._text = self._text + text if self._text else text
        if len(self._text) < WINDOW:
            return []
        if not isinstance(self.parser, TextParser):
            self._dropped, self._text = True, ""
            return []
        return self._window(self.parser, final=False)

    def finish(self) -> list[MetricLog]:
        """The line ended (its newline came, or the input did): the logs of what is left of it."""
        text = self._text + self._decoder.decode(b"", final=True)
        self._text = text[:-1] if text.endswith("\r") else text  # as `decode_line`: a CR before the newline
        parser = self.parser
        if self._windows == 0 and not self._dropped:
            return parser.parse_line(self._text, self.lineno, self.default_time)  # an ordinary line after all
        parser.stats.lines += 1
        if isinstance(parser, TextParser):
            return [] if self._dropped else self._window(parser, final=True)
        skip = getattr(parser, "skip", None)
        if skip is not None:
            skip(self.lineno, SkipReason.LINE_TOO_LONG,
                 f"a line of {self._bytes:,} bytes is over the {WINDOW:,}-byte limit for one JSON object")
        return []

    def _window(self, parser: TextParser, *, final: bool) -> list[MetricLog]:
        text, base = self._text, self._base
        if self._windows == 0:
            self._stamp = line_timestamp(text[:STAMP_PREFIX]) or self.default_time
            self._states = [(0, -1)] * len(parser.filters)
        self._windows += 1
        limit = len(text) if final else len(text) - OVERLAP
        deadline = time.monotonic() + parser.regex_timeout
        pairs: list[tuple[str, str]] = []
        states: list[tuple[int, int]] = []
        try:
            for flt, (pos, prev_end) in zip(parser.filters, self._states, strict=True):
                pos, prev_end = self._one_filter(parser, flt, pairs, pos - base, prev_end - base, limit, final,
                                                 deadline)
                states.append((pos + base, prev_end + base))
        except FilterTimeout as err:
            parser.timed_out(self.lineno, err)
            self._dropped, self._text = True, ""
            return []
        self._states = states
        keep = max(min(pos for pos, _ in states) - 1 - base, 0) if states else len(text)
        self._text, self._base = text[keep:], base + keep
        return parser.emit(pairs, self._stamp, self.lineno)

    def _one_filter(self, parser: TextParser, flt: Filter, pairs: list[tuple[str, str]], pos: int, prev_end: int,
                    limit: int, final: bool, deadline: float) -> tuple[int, int]:
        """Take `flt`'s matches of the window that end by `limit`; where its next window starts."""
        text = self._text
        for match in flt.scan(text, pos, prev_end, deadline):
            if not final and match.end > limit:
                if match.start >= limit - OVERLAP:
                    return match.start, prev_end  # matched again, whole, in the next window
                self._cut(limit)  # a match over OVERLAP long runs past the window: not taken
                return limit, prev_end
            pairs.append((match.name, match.value))
            parser.check_cut(text, match, self.lineno)
            prev_end = match.end
        if final:
            return len(text), prev_end
        if isinstance(flt, DefaultFilter) and text.count("=", limit) <= 1 and _OUTSIDE_ANY_MATCH.search(
                text, limit) is None:
            self._cut(limit)  # the window's last OVERLAP characters may all be in one match begun before them
        return limit, prev_end

    def _cut(self, limit: int) -> None:
        assert isinstance(self.parser, TextParser)
        self.parser.skip(self.lineno, SkipReason.LINE_CUT,
                         f"a match may straddle character {self._base + limit:,} of this line: {OVERLAP:,} "
                         "characters without a separator (a value there may be lost)")
