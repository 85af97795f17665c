"""JSON lines format: one line → MetricLogs, Katib's rules with DESIGN differences 1, 2 and 12 (pure)."""

from __future__ import annotations

import json
import math
from typing import Any

from katib_metrics.parsers.model import ZERO_TIME, CollectorSpec, MetricLog
from katib_metrics.parsers.numbers import format_number, parse_go_float
from katib_metrics.parsers.stats import ParseStats, SkipReason, SkipSink, note_skip
from katib_metrics.parsers.timestamps import json_timestamp

__all__ = ["BOOKKEEPING_KEYS", "TIMESTAMP_KEY", "JsonLinesParser", "decode_object"]

TIMESTAMP_KEY = "timestamp"
BOOKKEEPING_KEYS = frozenset({"step", "epoch", "global_step", "trial"})
"""Keys the Kubeflow SDK and Vertex's hypertune write beside the metrics: in text collection (DESIGN difference 14)
they are metrics only when asked for by name."""


class _NotJson(ValueError):
    """A token Go's decoder rejects but Python's accepts (NaN, Infinity, numbers beyond float64)."""


def _reject_constant(token: str) -> Any:
    raise _NotJson(f"{token} is not valid JSON")


def _parse_float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise _NotJson(f"{token} is out of float64 range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


class JsonLinesParser:
    """Parses JSON lines for one collector spec; counts what it reads, records and skips in `stats`."""

    def __init__(
        self,
        spec: CollectorSpec,
        *,
        stats: ParseStats | None = None,
        on_skip: SkipSink | None = None,
    ) -> None:
        self.spec = spec
        self.stats = stats if stats is not None else ParseStats()
        self._on_skip = on_skip

    def parse_line(self, line: str, lineno: int, default_time: str = ZERO_TIME) -> list[MetricLog]:
        """Every wanted metric of the JSON object on `line`; blank lines are ignored."""
        self.stats.lines += 1
        if not line.strip():
            return []
        obj = self._decode(line, lineno)
        if obj is None:
            return []
        return self.parse_object(obj, lineno, default_time)

    def parse_object(self, obj: dict[str, Any], lineno: int, default_time: str = ZERO_TIME,
                     not_metrics: frozenset[str] = frozenset()) -> list[MetricLog]:
        """The wanted metrics of a decoded object; without names, every key but the time stamp and `not_metrics`."""
        stamp = json_timestamp(obj[TIMESTAMP_KEY]) if TIMESTAMP_KEY in obj else None
        names = self.spec.metric_names or tuple(
            key for key in obj if key != TIMESTAMP_KEY and key not in not_metrics
        )
        logs: list[MetricLog] = []
        for name in names:
            if name not in obj:
                continue
            value = self._value_text(obj[name], name, lineno)
            if value is not None:
                self.stats.values[name] += 1
                logs.append(MetricLog(stamp or default_time, name, value))
        return logs

    def _decode(self, line: str, lineno: int) -> dict[str, Any] | None:
        try:
            obj = _DECODER.decode(line)
        except (ValueError, RecursionError) as err:
            self.skip(lineno, SkipReason.INVALID_JSON, f"not a JSON object: {err}")
            return None
        if not isinstance(obj, dict):
            self.skip(lineno, SkipReason.INVALID_JSON, f"a JSON {type(obj).__name__}, not an object")
            return None
        return obj

    def _value_text(self, value: Any, name: str, lineno: int) -> str | None:
        if isinstance(value, str):
            if parse_go_float(value) is not None:
                return value  # kept verbatim, as Katib stores string values
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return format_number(value)
        if self.spec.metric_names:
            self.skip(lineno, SkipReason.NOT_A_NUMBER, f"{name}={json.dumps(value)} is not a number")
        return None

    def skip(self, lineno: int, reason: SkipReason, detail: str) -> None:
        note_skip(self.stats, self._on_skip, lineno, reason, detail)


def decode_object(line: str) -> dict[str, Any] | None:
    """The JSON object that is the whole of `line` (Go's number rules), else None: no error, no count."""
    try:
        obj = _DECODER.decode(line)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None
