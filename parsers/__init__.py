"""Pure parsing toolkit for Katib metrics: text logs, JSON lines, TensorFlow events, Prometheus, strategies.

Usable on its own, e.g. in a training project's tests, to check that its logs parse:

    from katib_metrics.parsers import CollectorSpec, make_line_parser, reduce_logs
    spec = CollectorSpec(metric_names=("accuracy",))
    logs = make_line_parser(spec).parse_line("epoch=3 accuracy=0.91", 1)
    assert reduce_logs(spec, logs)[0].latest == "0.91"

Imports only the standard library and `regex` (bounded-time user filters); the TensorFlow-event reader
(`read_event_dir`, `EventDirReader`) needs protobuf and is imported on first use. Imports neither
`collector` nor `injector`.
"""

from typing import Any

from katib_metrics.parsers.errors import FilterError, InputError, ParseError, SpecError
from katib_metrics.parsers.filters import compile_filters, split_katib_filters
from katib_metrics.parsers.jsonl import JsonLinesParser
from katib_metrics.parsers.lines import LineParser, iter_lines, make_line_parser
from katib_metrics.parsers.model import (
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
from katib_metrics.parsers.numbers import format_float32, format_number, parse_go_float
from katib_metrics.parsers.observation import unavailable_rows
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipReason
from katib_metrics.parsers.strategies import Reducer, reduce_logs
from katib_metrics.parsers.stream import BlockParser, scan
from katib_metrics.parsers.text import TextParser
from katib_metrics.parsers.timestamps import (
    Instant,
    format_rfc3339,
    is_go_rfc3339nano,
    json_timestamp,
    line_timestamp,
    parse_rfc3339,
    unix_to_rfc3339,
)

_LAZY = {
    "read_event_dir": "katib_metrics.parsers.tfevent",
    "EventDirReader": "katib_metrics.parsers.tfevent",
    "parse_exposition": "katib_metrics.parsers.prometheus",
}


def __getattr__(name: str) -> Any:
    """Imported on first use: the event-file reader needs protobuf; both it and the exposition parser cost
    start-up time that `katib-metrics parse` of a text log should not pay."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parsers' has no attribute {name!r}")


__all__ = [
    "DEFAULT_FILTER",
    "UNAVAILABLE",
    "ZERO_TIME",
    "BlockParser",
    "CollectorSpec",
    "EventDirReader",
    "FileFormat",
    "FilterError",
    "InputError",
    "Instant",
    "JsonLinesParser",
    "LineParser",
    "MetricLog",
    "MetricSummary",
    "ObjectiveType",
    "ObservationLog",
    "ParseError",
    "ParseStats",
    "Reducer",
    "SkipReason",
    "Skipped",
    "SpecError",
    "Strategy",
    "TextParser",
    "compile_filters",
    "format_float32",
    "format_number",
    "format_rfc3339",
    "is_go_rfc3339nano",
    "iter_lines",
    "json_timestamp",
    "line_timestamp",
    "make_line_parser",
    "parse_exposition",
    "parse_go_float",
    "parse_rfc3339",
    "read_event_dir",
    "reduce_logs",
    "scan",
    "split_katib_filters",
    "unavailable_rows",
    "unix_to_rfc3339",
]
