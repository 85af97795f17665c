"""Pure parsing toolkit for Katib metrics: text logs, JSON lines, TensorFlow events, strategies.

Stdlib-only at import time (plus `regex` for bounded-time user filters); imports neither
`collector` nor `injector`.
"""

from parsers.errors import FilterError, InputError, ParseError, SpecError
from parsers.model import (
    DEFAULT_FILTER,
    UNAVAILABLE,
    ZERO_TIME,
    CollectorSpec,
    FileFormat,
    MetricLog,
    MetricSummary,
    ObjectiveType,
    ObservationLog,
    Strategy,
)
from parsers.numbers import format_float32, format_number, parse_go_float
from parsers.stats import ParseStats, Skipped, SkipReason

__all__ = [
    "DEFAULT_FILTER",
    "UNAVAILABLE",
    "ZERO_TIME",
    "CollectorSpec",
    "FileFormat",
    "FilterError",
    "InputError",
    "MetricLog",
    "MetricSummary",
    "ObjectiveType",
    "ObservationLog",
    "ParseError",
    "ParseStats",
    "SkipReason",
    "Skipped",
    "SpecError",
    "Strategy",
    "format_float32",
    "format_number",
    "parse_go_float",
]
