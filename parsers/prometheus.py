"""Prometheus exposition text to MetricLogs: the parser stage of kind `PrometheusMetric` (pure, stdlib only).

Reads the text format 0.0.4 (what every Prometheus client library serves) and tolerates OpenMetrics text
(a document with a `# EOF` line: timestamps in seconds, exemplars after ` # `). `# HELP`, `# TYPE`,
`# UNIT` and other comments carry no samples and are passed over. Label values may use the escapes
`\\\\`, `\\"` and `\\n`; values are Go floats (`NaN`, `+Inf`, `-Inf` included); a sample's optional
timestamp (milliseconds, or seconds in OpenMetrics) becomes its row's time, otherwise the caller's
`default_time` (the scrape time) does. Histogram and summary samples keep their own names
(`x_bucket`, `x_sum`, `x_count`, `x{quantile="0.5"}`).

Which samples become rows (the metric names of `CollectorSpec.metric_names`):

* a plain name (`accuracy`) selects every sample with exactly that name, whatever its labels; each
  matching series gives one row named `accuracy`;
* a name with a selector (`accuracy{split="val"}`) selects the samples of that name whose labels include
  every listed pair; rows carry the requested text verbatim as their name, so Katib sees exactly the
  metric name the experiment asked for;
* with no metric names (the `parse` command's exploration mode) every sample is a row, named by its
  series (`name{label="v",...}`, labels sorted, or the bare name when it has none): the text to pass to
  `-m` to select that series.

Lines that are not valid exposition text are skipped and counted as `bad_record`; a sample whose value is
not a Go float is skipped and counted as `not_a_number`. Neither stops the parse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.numbers import format_number, parse_go_float
from katib_metrics.parsers.observation import batches
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipReason, SkipSink, report_skip
from katib_metrics.parsers.timestamps import Instant, format_rfc3339

__all__ = [
    "Labels",
    "Sample",
    "Selector",
    "compile_selectors",
    "exposition_batches",
    "iter_samples",
    "line_count",
    "parse_exposition",
    "rfc3339_from_ns",
    "select_samples",
    "series_text",
    "to_metric_log",
]

Labels = tuple[tuple[str, str], ...]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
# Legacy names, labels without escapes or spaces, value, optional timestamp: what client libraries write.
_SIMPLE_SAMPLE = re.compile(
    rf"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{((?:{_PAIR}(?:,{_PAIR})*,?)?)\}})?[ \t]+(\S+)(?:[ \t]+(\S+))?"
)
_SIMPLE_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"')
_INT_MS = re.compile(r"[+-]?\d+")
_EOF = "# EOF"
_EOF_LINE = re.compile(r"^[ \t]*# EOF[ \t]*\r?$", re.MULTILINE)
# Go's time range that RFC3339 can write: years 0001-9999.
_MIN_NS = -62135596800 * 10**9
_MAX_NS = 253402300799 * 10**9 + (10**9 - 1)


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: `line` is its 1-based line number, `timestamp_ns` its own time if it has one."""

    name: str
    labels: Labels
    value: float
    timestamp_ns: int | None
    line: int


@dataclass(frozen=True, slots=True)
class Selector:
    """One requested metric name: `text` names the rows, `name` and `labels` choose the samples."""

    text: str
    name: str
    labels: Labels = ()

    def matches(self, sample: Sample) -> bool:
        return sample.name == self.name and all(pair in sample.labels for pair in self.labels)


class _Malformed(Exception):
    """A line that is not exposition text; the message says what is wrong with it."""


def parse_exposition(text: str, spec: CollectorSpec, default_time: str, stats: ParseStats | None = None,
                     on_skip: SkipSink | None = None) -> list[MetricLog]:
    """The rows the exposition `text` holds for `spec.metric_names` (all samples when there are none).

    Counts every row into `stats.values` and every skip into `stats.skipped`; `stats.lines` is the reader's to
    count (house rule of `ParseStats`), e.g. with `line_count(text)`. A malformed `{...}` selector: `SpecError`.
    """
    return [row for batch in exposition_batches(text, spec, default_time, stats, on_skip) for row in batch]


def exposition_batches(text: str, spec: CollectorSpec, default_time: str, stats: ParseStats | None = None,
                       on_skip: SkipSink | None = None, size: int = 10_000) -> Iterator[list[MetricLog]]:
    """`parse_exposition`'s rows, `size` at a time: an exposition of any number of samples holds one batch."""
    yield from batches(_rows(text, compile_selectors(spec.metric_names), default_time, stats, on_skip), size)


def _rows(text: str, selectors: Sequence[Selector], default_time: str, stats: ParseStats | None,
          on_skip: SkipSink | None) -> Iterator[MetricLog]:
    for row_name, sample in select_samples(iter_samples(text, stats, on_skip), selectors):
        if stats is not None:
            stats.values[row_name] += 1
        yield to_metric_log(row_name, sample, default_time)


def to_metric_log(row_name: str, sample: Sample, default_time: str) -> MetricLog:
    when = default_time if sample.timestamp_ns is None else rfc3339_from_ns(sample.timestamp_ns)
    return MetricLog(when, row_name, format_number(sample.value))


def compile_selectors(metric_names: Sequence[str]) -> tuple[Selector, ...]:
    """Selectors for the requested names; a name with `{` must be a valid `name{label="value",...}`."""
    return tuple(_compile_selector(name) for name in metric_names)


def _compile_selector(text: str) -> Selector:
    if "{" not in text:
        return Selector(text, text)
    try:
        name, labels, end = _parse_series(text, 0)
    except _Malformed as exc:
        raise SpecError(
            f"invalid Prometheus metric selector {text!r}: {exc}; "
            'write it as name{label="value",...} or give the plain metric name'
        ) from None
    if end != len(text) or not name:
        raise SpecError(
            f"invalid Prometheus metric selector {text!r}: "
            'expected name{label="value",...} with nothing after the closing brace'
        )
    return Selector(text, name, labels)


def select_samples(samples: Iterable[Sample], selectors: Sequence[Selector]) -> Iterator[tuple[str, Sample]]:
    """(row name, sample) for each selector a sample matches; every sample by series when none given."""
    for sample in samples:
        if not selectors:
            yield series_text(sample.name, sample.labels), sample
            continue
        for selector in selectors:
            if selector.matches(sample):
                yield selector.text, sample


def series_text(name: str, labels: Labels) -> str:
    """`name{a="1",b="2"}` with labels sorted and escaped: a selector that picks exactly this series."""
    if not labels:
        return name
    inner = ",".join(f'{_label_key(key)}="{_escape(value)}"' for key, value in sorted(labels))
    if _NAME.fullmatch(name):
        return f"{name}{{{inner}}}"
    return f'{{"{_escape(name)}",{inner}}}'  # a UTF-8 name goes inside the braces, quoted


def iter_samples(
    text: str, stats: ParseStats | None = None, on_skip: SkipSink | None = None
) -> Iterator[Sample]:
    """Every well-formed sample of the document in order; malformed lines are reported and skipped."""
    open_metrics = _EOF_LINE.search(text) is not None
    for number, raw in enumerate(_lines(text), start=1):  # one line at a time: never a list of them all
        line = raw.strip(" \t\r")
        if line == _EOF and open_metrics:
            return
        if not line or line.startswith("#"):
            continue
        try:
            yield _parse_sample(line, number, open_metrics)
        except _Malformed as exc:
            _skip(
                Skipped(number, SkipReason.BAD_RECORD, f"line {number}: {exc}: {line[:200]!r}"),
                stats,
                on_skip,
            )
        except _NotANumber as exc:
            _skip(Skipped(number, SkipReason.NOT_A_NUMBER, f"line {number}: {exc}"), stats, on_skip)


def line_count(text: str) -> int:
    """How many lines `text` holds, as this parser splits them (an unterminated last line counts)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _lines(text: str, piece: int = 1 << 20) -> Iterator[str]:
    """Lines end at `\n` only (a label value may hold a raw `\r`); split `piece` characters at a time: C speed,
    never a list of every line of a large exposition."""
    start, end = 0, len(text)
    while start < end:
        cut = text.find("\n", start + piece) if end - start > piece else -1
        lines = (text[start:] if cut < 0 else text[start:cut]).split("\n")
        yield from lines[:-1] if cut < 0 and lines[-1] == "" else lines  # a final `\n` ends the last line
        start = end if cut < 0 else cut + 1


class _NotANumber(Exception):
    """A well-formed sample line whose value does not parse as a Go float."""


def _skip(skip: Skipped, stats: ParseStats | None, on_skip: SkipSink | None) -> None:
    report_skip(skip, stats, on_skip)


def _parse_sample(line: str, number: int, open_metrics: bool) -> Sample:
    simple = _SIMPLE_SAMPLE.fullmatch(line)
    if simple is not None:  # the common shape, in one regex: about twice as fast
        name, pairs, value_text, stamp_text = simple.groups()
        labels: Labels = tuple(_SIMPLE_PAIR.findall(pairs)) if pairs else ()
        fields = [value_text] if stamp_text is None else [value_text, stamp_text]
    else:
        name, labels, fields = _split_sample(line, open_metrics)
    stamp = _parse_timestamp(fields[1], open_metrics) if len(fields) == 2 else None
    value = parse_go_float(fields[0])
    if value is None:
        raise _NotANumber(f"value {fields[0]!r} of {series_text(name, labels)} is not a number")
    return Sample(name, labels, value, stamp, number)


def _split_sample(line: str, open_metrics: bool) -> tuple[str, Labels, list[str]]:
    """Name, labels and the value and timestamp fields of any sample line; raises `_Malformed`."""
    name, labels, pos = _parse_series(line, 0)
    if not name:
        raise _Malformed("a sample needs a metric name")
    rest = line[pos:]
    if not rest.strip():
        raise _Malformed("the sample has no value")
    if line[pos - 1] != "}" and rest[0] not in " \t":
        raise _Malformed("expected a space between the metric name and its value")
    head = rest.partition("#")[0] if open_metrics else rest  # drop an OpenMetrics exemplar
    fields = head.split()
    if not 1 <= len(fields) <= 2:
        raise _Malformed("expected a value and at most a timestamp after the series")
    return name, labels, fields


def _parse_timestamp(text: str, open_metrics: bool) -> int:
    """Nanoseconds since the epoch from integer milliseconds (0.0.4) or decimal seconds (OpenMetrics)."""
    if open_metrics:
        try:
            ns = int(Decimal(text) * 10**9)
        except (ArithmeticError, ValueError):  # InvalidOperation, Overflow, infinities and NaN
            raise _Malformed(f"timestamp {text!r} is not a finite number of seconds") from None
    elif _INT_MS.fullmatch(text):
        ns = int(text) * 10**6
    else:
        raise _Malformed(f"timestamp {text!r} is not an integer number of milliseconds")
    if not _MIN_NS <= ns <= _MAX_NS:
        raise _Malformed(f"timestamp {text!r} is outside years 0001-9999")
    return ns


def _parse_series(text: str, pos: int) -> tuple[str, Labels, int]:
    """Metric name and labels starting at `pos`; the name may also be quoted inside the braces."""
    match = _NAME.match(text, pos)
    name = match.group() if match else ""
    pos = match.end() if match else pos
    if text[pos : pos + 1] != "{":
        return name, (), pos
    labels: list[tuple[str, str]] = []
    pos = _skip_space(text, pos + 1)
    while text[pos : pos + 1] != "}":
        if pos >= len(text):
            raise _Malformed("unterminated label set: missing '}'")
        key, value, pos = _parse_label(text, pos, quoted_name_allowed=not name and not labels)
        if key is None:
            name = value
        else:
            labels.append((key, value))
        pos = _after_label(text, pos)
    return name, tuple(labels), pos + 1


def _parse_label(text: str, pos: int, *, quoted_name_allowed: bool) -> tuple[str | None, str, int]:
    """`key="value"` at `pos` (key None when this item is a quoted metric name); returns the end too."""
    quoted = _QUOTED.match(text, pos)
    match = quoted or _LABEL_NAME.match(text, pos)
    if match is None:
        raise _Malformed(f"expected a label name at column {pos + 1}")
    key = _unescape(match.group(1)) if quoted else match.group()
    pos = _skip_space(text, match.end())
    if text[pos : pos + 1] != "=":
        if quoted and quoted_name_allowed:
            return None, key, pos
        raise _Malformed(f"expected '=' after label {key!r}")
    pos = _skip_space(text, pos + 1)
    value = _QUOTED.match(text, pos)
    if value is None:
        raise _Malformed(f"label {key!r} needs a double-quoted value")
    return key, _unescape(value.group(1)), value.end()


def _after_label(text: str, pos: int) -> int:
    """Position of the next label or of the closing brace, past one optional comma."""
    pos = _skip_space(text, pos)
    if text[pos : pos + 1] == ",":
        pos = _skip_space(text, pos + 1)
    elif text[pos : pos + 1] != "}":
        raise _Malformed(f"expected ',' or '}}' at column {pos + 1}")
    return pos


def _skip_space(text: str, pos: int) -> int:
    while text[pos : pos + 1] in (" ", "\t"):
        pos += 1
    return pos


def _unescape(text: str) -> str:
    return _ESCAPE.sub(_unescape_one, text)


def _unescape_one(match: re.Match[str]) -> str:
    char = match.group(1)
    if char == "n":
        return "\n"
    # The format defines only \\, \" and \n; keep any other backslash as written, as Prometheus does.
    return char if char in '\\"' else match.group()


def _label_key(key: str) -> str:
    return key if _LABEL_NAME.fullmatch(key) else f'"{_escape(key)}"'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def rfc3339_from_ns(ns: int) -> str:
    """UTC RFC3339 with Go's RFC3339Nano fraction, trailing zeros trimmed: `1970-01-01T00:00:01.5Z`."""
    seconds, nanos = divmod(ns, 10**9)
    return format_rfc3339(Instant(seconds, nanos))
