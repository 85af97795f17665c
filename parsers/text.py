"""TEXT format: one log line → MetricLogs, with Katib's filters, its timestamp rule and ours (pure).

Katib's algorithm (reference §2.4) with DESIGN differences 3, 5 and 6: values that are not numbers
are skipped and counted instead of being reported as `""`, more timestamp forms are recognised,
and each line's matching has a time budget.
"""

from __future__ import annotations

import time

from katib_metrics.parsers.filters import Filter, FilterTimeout, compile_filters
from katib_metrics.parsers.model import ZERO_TIME, CollectorSpec, MetricLog
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.stats import ParseStats, SkipReason, SkipSink, note_skip
from katib_metrics.parsers.timestamps import line_timestamp

__all__ = ["TextParser"]

DEFAULT_REGEX_TIMEOUT = 1.0


class TextParser:
    """Parses TEXT lines for one collector spec; counts what it reads, records and skips in `stats`."""

    def __init__(
        self,
        spec: CollectorSpec,
        *,
        regex_timeout: float = DEFAULT_REGEX_TIMEOUT,
        stats: ParseStats | None = None,
        on_skip: SkipSink | None = None,
    ) -> None:
        self.spec = spec
        self.filters: tuple[Filter, ...] = compile_filters(spec.filters)
        self.regex_timeout = regex_timeout
        self.stats = stats if stats is not None else ParseStats()
        self._on_skip = on_skip
        self._wanted = frozenset(spec.metric_names)
        # Katib's pre-filter: a line can only yield a wanted name if it contains it. Without names,
        # the default filter still needs an `=`.
        self.needles: tuple[str, ...] = spec.metric_names or (() if spec.filters else ("=",))

    def parse_line(self, line: str, lineno: int, default_time: str = ZERO_TIME) -> list[MetricLog]:
        """Every wanted metric in `line` (no newline), stamped with its time or `default_time`."""
        self.stats.lines += 1
        if self.needles and not any(needle in line for needle in self.needles):
            return []
        return self.parse_candidate(line, lineno, default_time)

    def parse_candidate(self, line: str, lineno: int, default_time: str = ZERO_TIME) -> list[MetricLog]:
        """`parse_line` for a line already known to pass the pre-filter and already counted."""
        pairs = self._match(line, lineno)
        if not pairs:
            return []
        stamp = line_timestamp(line) or default_time
        logs: list[MetricLog] = []
        for name, value in pairs:
            if (not self._wanted or name in self._wanted) and self.accept(name, value, lineno):
                logs.append(MetricLog(stamp, name, value))
        return logs

    def accept(self, name: str, value: str, lineno: int) -> bool:
        """Count a wanted value, or skip and count it when it is not a number (DESIGN difference 3)."""
        if parse_go_float(value) is None:
            self._skip(lineno, SkipReason.NOT_A_NUMBER, f"{name}={value!r} is not a number")
            return False
        self.stats.values[name] += 1
        return True

    def _match(self, line: str, lineno: int) -> list[tuple[str, str]]:
        if len(self.filters) == 1 and not self.spec.filters:
            return self.filters[0].find_all(line, 0.0)  # the built-in default filter runs in linear time
        deadline = time.monotonic() + self.regex_timeout
        pairs: list[tuple[str, str]] = []
        try:
            for flt in self.filters:
                pairs.extend(flt.find_all(line, deadline))
        except FilterTimeout as err:
            self._skip(
                lineno,
                SkipReason.REGEX_TIMEOUT,
                f"matching {err.args[0]!r} took over {self.regex_timeout:g}s; line skipped",
            )
            return []
        return pairs

    def _skip(self, lineno: int, reason: SkipReason, detail: str) -> None:
        note_skip(self.stats, self._on_skip, lineno, reason, detail)
