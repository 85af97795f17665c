"""TEXT format: one log line → MetricLogs, with Katib's filters, its timestamp rule and ours (pure).

Katib's algorithm (reference §2.4) with DESIGN differences 3, 5 and 6: values that are not numbers
are skipped and counted instead of being reported as `""`, more timestamp forms are recognised,
and each line's matching has a time budget.
"""

from __future__ import annotations

import logging
import re
import time

from katib_metrics.parsers.filters import Filter, FilterTimeout, Match, compile_filters
from katib_metrics.parsers.jsonl import BOOKKEEPING_KEYS, JsonLinesParser, decode_object
from katib_metrics.parsers.model import ZERO_TIME, CollectorSpec, MetricLog
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.stats import NoticeSink, ParseStats, SkipReason, SkipSink, note_skip
from katib_metrics.parsers.timestamps import line_timestamp

__all__ = ["TextParser"]

DEFAULT_REGEX_TIMEOUT = 1.0
# What may follow a number that a filter cut short: more digits, a fraction, an exponent (`2.5` of `2.5e-05`).
_NUMBER_REST = re.compile(r"(?:\d|\.\d|[eE][+-]?\d)[\d.]*(?:[eE][+-]?\d+)?", re.ASCII)
_CUT_HINT = r"e.g. end the value group with (?:[eE][+-]?\d+)?, as in ([+-]?\d*\.?\d+(?:[eE][+-]?\d+)?)"

log = logging.getLogger(__name__)


class TextParser:
    """Parses TEXT lines for one collector spec; counts what it reads, records and skips in `stats`."""

    def __init__(
        self,
        spec: CollectorSpec,
        *,
        regex_timeout: float = DEFAULT_REGEX_TIMEOUT,
        stats: ParseStats | None = None,
        on_skip: SkipSink | None = None,
        on_notice: NoticeSink | None = None,
    ) -> None:
        self.spec = spec
        self.filters: tuple[Filter, ...] = compile_filters(spec.filters)
        self.regex_timeout = regex_timeout
        self.stats = stats if stats is not None else ParseStats()
        self._on_skip = on_skip
        self._on_notice = on_notice
        self._wanted = frozenset(spec.metric_names)
        self._cut_noticed: set[str] = set()
        self._json: JsonLinesParser | None = None
        # Katib's pre-filter: a line can only yield a wanted name if it contains it. Without names,
        # the default filter still needs an `=`, or a `{` for a JSON line (DESIGN difference 14).
        self.needles: tuple[str, ...] = spec.metric_names or (() if spec.filters else ("=", "{"))

    def parse_line(self, line: str, lineno: int, default_time: str = ZERO_TIME) -> list[MetricLog]:
        """Every wanted metric in `line` (no newline), stamped with its time or `default_time`."""
        self.stats.lines += 1
        if self.needles and not any(needle in line for needle in self.needles):
            return []
        return self.parse_candidate(line, lineno, default_time)

    def parse_candidate(self, line: str, lineno: int, default_time: str = ZERO_TIME) -> list[MetricLog]:
        """`parse_line` for a line already known to pass the pre-filter and already counted."""
        pairs = self._match(line, lineno)
        if pairs is None:
            return []
        if not pairs:
            return self._json_line(line, lineno, default_time)
        return self.emit(pairs, line_timestamp(line) or default_time, lineno)

    def emit(self, pairs: list[tuple[str, str]], stamp: str, lineno: int) -> list[MetricLog]:
        """The MetricLogs of a line's (name, value) matches: wanted names with numbers, stamped `stamp`."""
        logs: list[MetricLog] = []
        for name, value in pairs:
            if (not self._wanted or name in self._wanted) and self.accept(name, value, lineno):
                logs.append(MetricLog(stamp, name, value))
        return logs

    def _json_line(self, line: str, lineno: int, default_time: str) -> list[MetricLog]:
        """A line that is one JSON object and held no filter match is read as a JSON line (DESIGN difference 14)."""
        text = line.strip()
        if text[:1] != "{" or text[-1:] != "}" or (obj := decode_object(text)) is None:
            return []
        if self._json is None:
            self._json = JsonLinesParser(self.spec, stats=self.stats, on_skip=self._on_skip)
        return self._json.parse_object(obj, lineno, default_time, BOOKKEEPING_KEYS)

    def check_cut(self, line: str, match: Match, lineno: int) -> None:
        """Say once per metric when a user filter's value stops inside a number (`2.5` of `2.5e-05`)."""
        name = match.name
        if name in self._cut_noticed or (self._wanted and name not in self._wanted):
            return
        rest = _NUMBER_REST.match(line, match.value_end)
        if rest is None or parse_go_float(match.value) is None:
            return
        self._cut_noticed.add(name)
        self.notice(lineno, f"{name}: the metricsFormat filter captured {match.value!r} but the number goes on "
                            f"with {rest.group()!r}; the value recorded is cut short ({_CUT_HINT})")

    def notice(self, lineno: int, message: str) -> None:
        if self._on_notice is not None:
            self._on_notice(lineno, message)
        else:
            log.warning("line %d: %s", lineno, message)

    def accept(self, name: str, value: str, lineno: int) -> bool:
        """Count a wanted value, or skip and count it when it is not a number (DESIGN difference 3)."""
        if parse_go_float(value) is None:
            self.skip(lineno, SkipReason.NOT_A_NUMBER, f"{name}={value!r} is not a number")
            return False
        self.stats.values[name] += 1
        return True

    def _match(self, line: str, lineno: int) -> list[tuple[str, str]] | None:
        """The line's (name, value) matches in Katib's order; None when its time budget ran out."""
        if len(self.filters) == 1 and not self.spec.filters:
            return self.filters[0].find_all(line, 0.0)  # the built-in default filter runs in linear time
        deadline = time.monotonic() + self.regex_timeout
        pairs: list[tuple[str, str]] = []
        try:
            for flt in self.filters:
                for match in flt.scan(line, 0, -1, deadline):
                    pairs.append((match.name, match.value))
                    self.check_cut(line, match, lineno)
        except FilterTimeout as err:
            self.timed_out(lineno, err)
            return None
        return pairs

    def timed_out(self, lineno: int, err: FilterTimeout) -> None:
        self.skip(lineno, SkipReason.REGEX_TIMEOUT,
                  f"matching {err.args[0]!r} took over {self.regex_timeout:g}s; line skipped")

    def skip(self, lineno: int, reason: SkipReason, detail: str) -> None:
        note_skip(self.stats, self._on_skip, lineno, reason, detail)
