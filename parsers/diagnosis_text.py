"""Diagnosis of TEXT logs: the filter missed the name's lines, a close name, values that are not numbers (pure).

One pass over the sample gathers, within fixed caps: what the spec's filters match (names with number
values, names with other values), names printed beside numbers in any style, and per wanted name the
lines that hold it as a word but yield no value. Candidate metricsFormat regexes are then verified by
re-parsing the sample with the real parser; only one that collects values is suggested.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from katib_metrics.parsers.diagnosis import ANY_METRIC, Diagnosis, Sample, Suggestion, lines, quote_line
from katib_metrics.parsers.diagnosis_names import CappedCounter, Verifier, similar_names
from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.filters import Filter, FilterTimeout, compile_filters
from katib_metrics.parsers.model import DEFAULT_FILTER, CollectorSpec, FileFormat
from katib_metrics.parsers.numbers import parse_go_float

__all__ = ["NUMBER", "candidate_filters", "diagnose_text"]

NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[Ee][+-]?\d+)?"
"""A whole number with its exponent: a value group that never cuts `2.5e-05` to `2.5`."""

# A name-like word printed next to a number in any common style: `acc=1`, `acc: 1`, `"acc": 1`, `acc 1`.
_PRINTED = re.compile(r"([A-Za-z_][\w./|-]*)[\"']?[ \t]*(?:[:=][ \t]*|[ \t])[\"']?[+-]?\.?\d")
_EXAMPLES = 3


@dataclass
class _Wanted:
    """What the pass saw of one wanted name."""

    word: re.Pattern[str]
    lines: int = 0  # lines holding the name as a word but yielding no number for it
    first: tuple[int, str] | None = None
    not_numbers: list[tuple[int, str]] = field(default_factory=list)
    collected: int = 0


@dataclass
class _Pass:
    lines: int = 0
    collected: CappedCounter = field(default_factory=CappedCounter)
    printed: CappedCounter = field(default_factory=CappedCounter)
    wanted: dict[str, _Wanted] = field(default_factory=dict)


def _word(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w./|-]){re.escape(name)}(?![\w|-])")


def _gather(spec: CollectorSpec, sample: Sample, missing: Sequence[str], regex_timeout: float) -> _Pass:
    filters = compile_filters(spec.filters)
    seen = _Pass(wanted={name: _Wanted(_word(name)) for name in missing if name})
    for lineno, line in enumerate(sample.lines(), 1):
        seen.lines = lineno
        pairs = _pairs(filters, line, regex_timeout)
        numbers = set()
        for name, value in pairs:
            if parse_go_float(value) is not None:
                seen.collected.add(name)
                numbers.add(name)
            elif name in seen.wanted and len(seen.wanted[name].not_numbers) < _EXAMPLES:
                seen.wanted[name].not_numbers.append((lineno, value))
        for match in _PRINTED.finditer(line):
            seen.printed.add(match.group(1))
        for name, wanted in seen.wanted.items():
            if name not in numbers and name in line and wanted.word.search(line):
                wanted.lines += 1
                wanted.first = wanted.first or (lineno, line)
    return seen


def _pairs(filters: tuple[Filter, ...], line: str, regex_timeout: float) -> list[tuple[str, str]]:
    deadline = time.monotonic() + regex_timeout
    try:
        return [pair for flt in filters for pair in flt.find_all(line, deadline)]
    except FilterTimeout:
        return []


def diagnose_text(
    spec: CollectorSpec, sample: Sample, missing: Sequence[str], *, regex_timeout: float = 1.0
) -> list[Diagnosis]:
    """One diagnosis per name of `missing` (`ANY_METRIC`: nothing at all was collected)."""
    seen = _gather(spec, sample, missing, regex_timeout)
    verify = Verifier(sample, regex_timeout)
    return [
        _nothing_collected(spec, sample, seen, verify)
        if name == ANY_METRIC
        else _diagnose_one(spec, sample, seen, name, verify)
        for name in missing
    ]


def _diagnose_one(spec: CollectorSpec, sample: Sample, seen: _Pass, name: str, verify: Verifier) -> Diagnosis:
    wanted = seen.wanted[name]
    if wanted.not_numbers and not seen.collected.get(name):
        return _not_a_number(spec, name, wanted, verify)
    if wanted.first is not None:
        return _filter_mismatch(spec, sample, name, wanted, verify)
    close = [n for n in similar_names(name, [*seen.collected, *seen.printed]) if n not in spec.metric_names]
    if close:
        return _similar(spec, sample, name, close, seen, verify)
    found = ", ".join(list(seen.collected)[:8]) or "nothing"
    return Diagnosis(
        name, "not_found",
        f"{name!r} appears nowhere in {sample.scope} ({lines(seen.lines)}); the filter collects: {found}",
        f"print the metric from the training as {name}=VALUE (Katib's default format), or request it by "
        "the name the training prints",
    )


def _not_a_number(spec: CollectorSpec, name: str, wanted: _Wanted, verify: Verifier) -> Diagnosis:
    shown = "; ".join(f"line {lineno}: {name}={value!r}" for lineno, value in wanted.not_numbers)
    suggestion = _verified_filter(spec, name, wanted, verify) if wanted.first else None
    return Diagnosis(
        name, "not_a_number",
        f"the filter captures values of {name!r}, but none is a number ({shown})",
        "print the value as a plain number (0.91, 9.1e-01: no %, units or nan), or make the filter's value "
        "group capture only the number",
        suggestion,
    )


def _filter_mismatch(spec: CollectorSpec, sample: Sample, name: str, wanted: _Wanted, verify: Verifier) -> Diagnosis:
    assert wanted.first is not None
    lineno, line = wanted.first
    current = "Katib's default filter (name=value)" if not spec.filters else "the metricsFormat"
    if line.lstrip().startswith("{") and line.rstrip().endswith("}"):
        values = verify(CollectorSpec(spec.metric_names, (), FileFormat.JSON))[name]
        if values:
            return Diagnosis(
                name, "filter_mismatch",
                f"{name!r} is a key of JSON lines in {sample.scope}, read as text, e.g. {quote_line(lineno, line)}",
                "collect the file as JSON lines (fileSystemPath.format: JSON)",
                Suggestion("format", "JSON", values),
            )
    return Diagnosis(
        name, "filter_mismatch",
        f"{name!r} appears on {lines(wanted.lines)} of {sample.scope} that {current} does not match, "
        f"e.g. {quote_line(lineno, line)}",
        "set metricsFormat to a regex whose first group captures the name and second the value on such lines, "
        f"or print {name}=VALUE",
        _verified_filter(spec, name, wanted, verify),
    )


def candidate_filters(name: str, line: str | None = None) -> list[str]:
    """metricsFormat regexes (RE2) that might capture `name` and its value; the first ones are generic."""
    extra = "".join(sorted({c for c in name if c in "./|"}))
    cls = rf"[\w{re.escape(extra)}-]" if extra else r"[\w-]"
    found = [
        rf"({cls}+)\s*[:=]\s*({NUMBER})",
        rf"[\"']({cls}+)[\"']\s*:\s*[\"']?({NUMBER})",
        rf"({cls}+)\s+({NUMBER})",
    ]
    if line is not None and (derived := _derived(cls, name, line)) is not None:
        found.append(derived)
    return found


def _derived(cls: str, name: str, line: str) -> str | None:
    """A regex built from how `line` separates `name` from the number after it (`acc -> 0.9`, `acc is 0.9`)."""
    match = re.search(rf"{_word(name).pattern}(\D{{1,12}}?)({NUMBER})", line)
    if match is None or not match.group(1).strip():
        return None
    parts = [re.escape(piece) for piece in match.group(1).split()]
    return rf"({cls}+)\s*" + r"\s*".join(parts) + rf"\s*({NUMBER})"


def _verified_filter(spec: CollectorSpec, name: str, wanted: _Wanted, verify: Verifier) -> Suggestion | None:
    """The first candidate that collects values of `name` and loses no other requested metric's values."""
    before = verify(spec)
    line = wanted.first[1] if wanted.first else None
    for candidate in candidate_filters(name, line):
        for filters in ((candidate,), (*(spec.filters or (DEFAULT_FILTER,)), candidate)):
            trial = CollectorSpec(spec.metric_names, filters, spec.format)
            try:
                compile_filters(filters)
            except SpecError:
                continue
            after = verify(trial)
            if after[name] and all(after[other] >= count for other, count in before.items()):
                return Suggestion("metricsFormat", filters, after[name])
    return None


def _similar(
    spec: CollectorSpec, sample: Sample, name: str, close: list[str], seen: _Pass, verify: Verifier
) -> Diagnosis:
    collected = [other for other in close if seen.collected.get(other)]
    suggestion = None
    for other in collected:
        values = verify(CollectorSpec((other,), spec.filters, spec.format))[other]
        if values:
            suggestion = Suggestion("metric", other, values)
            break
    listed = ", ".join(repr(other) + ("" if seen.collected.get(other) else " (not matched by the filter)")
                       for other in close)
    return Diagnosis(
        name, "similar_names",
        f"{name!r} appears nowhere in {sample.scope}, but close names do: {listed}",
        "request the metric by the name the training prints (objectiveMetricName/additionalMetricNames), "
        "or print it under the requested name",
        suggestion,
    )


def _nothing_collected(spec: CollectorSpec, sample: Sample, seen: _Pass, verify: Verifier) -> Diagnosis:
    printed = ", ".join(list(seen.printed)[:8])
    suggestion = None
    for candidate in candidate_filters(""):
        values = sum(verify(CollectorSpec((), (candidate,), spec.format)).values())
        if values:
            suggestion = Suggestion("metricsFormat", (candidate,), values)
            break
    evidence = f"no metric was collected from {sample.scope} ({lines(seen.lines)})"
    if printed:
        evidence += f"; names printed beside numbers: {printed}"
    return Diagnosis(
        ANY_METRIC, "filter_mismatch" if suggestion else "not_found", evidence,
        "print metrics as name=VALUE (Katib's default format), or set metricsFormat to match how they are printed",
        suggestion,
    )
