"""Diagnosis of JSON lines and Prometheus expositions: nested or re-cased keys, lines that are not objects (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from katib_metrics.parsers.diagnosis import ANY_METRIC, Diagnosis, Sample, Suggestion, lines, quote_line
from katib_metrics.parsers.diagnosis_names import CappedCounter, count_values, similar_names
from katib_metrics.parsers.model import CollectorSpec, FileFormat
from katib_metrics.parsers.numbers import parse_go_float

__all__ = ["diagnose_exposition", "diagnose_json"]

_EXAMPLES = 3
_MAX_DEPTH = 6
_MAX_NODES = 200  # keys visited per object when looking for nested ones


@dataclass
class _Wanted:
    word: re.Pattern[str]
    nested: tuple[int, str] | None = None  # (line, dotted path) of a nested or re-cased key
    recased: CappedCounter = field(default_factory=lambda: CappedCounter(20))
    not_numbers: list[tuple[int, str]] = field(default_factory=list)
    in_text: tuple[int, str] | None = None  # a non-JSON line holding the name


@dataclass
class _Pass:
    lines: int = 0
    objects: int = 0
    other: tuple[int, str] | None = None  # the first line that is not a JSON object
    keys: CappedCounter = field(default_factory=CappedCounter)
    wanted: dict[str, _Wanted] = field(default_factory=dict)


def _gather(sample: Sample, missing: Sequence[str]) -> _Pass:
    seen = _Pass(wanted={name: _Wanted(re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])"))
                         for name in missing if name})
    for lineno, line in enumerate(sample.lines(), 1):
        seen.lines = lineno
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            seen.other = seen.other or (lineno, line)
            for wanted in seen.wanted.values():
                if wanted.in_text is None and wanted.word.search(line):
                    wanted.in_text = (lineno, line)
            continue
        seen.objects += 1
        _look_into(seen, obj, lineno)
    return seen


def _look_into(seen: _Pass, obj: dict[str, Any], lineno: int) -> None:
    for key, value in obj.items():
        if _is_number(value):
            seen.keys.add(key)
    for name, wanted in seen.wanted.items():
        if name in obj and not _is_number(obj[name]) and len(wanted.not_numbers) < _EXAMPLES:
            wanted.not_numbers.append((lineno, json.dumps(obj[name])[:60]))
        for key in obj:
            if key != name and key.lower() == name.lower() and _is_number(obj[key]):
                wanted.recased.add(key)
        if wanted.nested is None:
            for path in _nested_paths(obj, name):
                wanted.nested = (lineno, path)
                break


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) or (isinstance(value, str) and parse_go_float(value) is not None)


def _nested_paths(obj: dict[str, Any], name: str) -> Iterator[str]:
    """Dotted paths below the top level whose last key is `name` (any case), breadth-bounded."""
    stack: list[tuple[str, Any, int]] = [(key, value, 1) for key, value in obj.items() if isinstance(value, dict)]
    visited = 0
    while stack and visited < _MAX_NODES:
        path, node, depth = stack.pop()
        for key, value in node.items():
            visited += 1
            if key.lower() == name.lower():
                yield f"{path}.{key}"
            if isinstance(value, dict) and depth < _MAX_DEPTH:
                stack.append((f"{path}.{key}", value, depth + 1))


def diagnose_json(spec: CollectorSpec, sample: Sample, missing: Sequence[str]) -> list[Diagnosis]:
    """One diagnosis per name of `missing` in a JSON lines sample."""
    seen = _gather(sample, missing)
    return [_one(spec, sample, seen, name) for name in missing]


def _one(spec: CollectorSpec, sample: Sample, seen: _Pass, name: str) -> Diagnosis:
    wanted = seen.wanted.get(name)
    if seen.objects == 0 or (wanted is not None and wanted.in_text and not wanted.nested and not wanted.not_numbers):
        return _not_objects(spec, sample, seen, name)
    if wanted is None:
        return Diagnosis(ANY_METRIC, "not_found", f"no JSON object of {sample.scope} has a numeric value",
                         'print one JSON object per line with numeric values, e.g. {"accuracy": 0.91}')
    if wanted.not_numbers:
        shown = "; ".join(f"line {lineno}: {value}" for lineno, value in wanted.not_numbers)
        return Diagnosis(name, "not_a_number", f"the key {name!r} is present, but no value is a number ({shown})",
                         f'write the value as a JSON number or numeric string: {{"{name}": 0.91}}')
    recased = [key for key in wanted.recased if key not in spec.metric_names]
    if recased or wanted.nested:
        return _elsewhere(spec, sample, name, wanted, recased)
    close = [key for key in similar_names(name, seen.keys) if key not in spec.metric_names]
    if close:
        return Diagnosis(name, "similar_names",
                         f"no key {name!r} in {sample.scope}, but close keys hold numbers: "
                         + ", ".join(map(repr, close)),
                         "request the metric by the key the training writes, or write it under the requested key",
                         _metric_suggestion(spec, sample, close))
    keys = ", ".join(list(seen.keys)[:8]) or "none"
    return Diagnosis(name, "not_found",
                     f"no key {name!r} in {sample.scope} ({lines(seen.lines)}); numeric keys: {keys}",
                     f'write it as a top-level key of each JSON line: {{"{name}": 0.91}}')


def _elsewhere(spec: CollectorSpec, sample: Sample, name: str, wanted: _Wanted, keys: list[str]) -> Diagnosis:
    if keys:
        return Diagnosis(name, "json_key_elsewhere",
                         f"no key {name!r}, but the key differs only in case: {', '.join(map(repr, keys))}",
                         "request the metric by the key exactly as written (JSON keys are case-sensitive)",
                         _metric_suggestion(spec, sample, keys))
    assert wanted.nested is not None
    lineno, path = wanted.nested
    return Diagnosis(name, "json_key_elsewhere",
                     f"{name!r} is nested, not a top-level key: {path} on line {lineno}",
                     f'Katib reads top-level keys only: write {{"{name}": VALUE}} at the top level of each line')


def _not_objects(spec: CollectorSpec, sample: Sample, seen: _Pass, name: str) -> Diagnosis:
    wanted = seen.wanted.get(name)
    lineno, line = (wanted.in_text if wanted and wanted.in_text else seen.other) or (0, "")
    values = count_values(CollectorSpec(spec.metric_names, (), FileFormat.TEXT), sample)
    got = values[name] if name else sum(values.values())
    how = "the lines holding it are" if seen.objects else "the lines are"
    return Diagnosis(name, "not_json_objects", f"{how} not JSON objects, e.g. {quote_line(lineno, line)}",
                     "print one JSON object per line, or collect the file as TEXT",
                     Suggestion("format", "TEXT", got) if got else None)


def _metric_suggestion(spec: CollectorSpec, sample: Sample, names: Sequence[str]) -> Suggestion | None:
    for other in names:
        values = count_values(CollectorSpec((other,), (), spec.format), sample)[other]
        if values:
            return Suggestion("metric", other, values)
    return None


def diagnose_exposition(spec: CollectorSpec, sample: Sample, missing: Sequence[str]) -> list[Diagnosis]:
    """Close sample names in a Prometheus exposition (the names it exposes are listed)."""
    from katib_metrics.parsers.prometheus import parse_exposition
    from katib_metrics.parsers.stats import ParseStats

    text = sample.data.decode("utf-8", "replace")
    stats = ParseStats(keep_skips=0)
    parse_exposition(text, CollectorSpec((), (), FileFormat.PROMETHEUS), "", stats)
    names = list(stats.values)
    out = []
    for name in missing:
        close = [n for n in similar_names(name, names) if n not in spec.metric_names]
        if close:
            counts = {}
            for other in close:
                found = ParseStats(keep_skips=0)
                parse_exposition(text, CollectorSpec((other,), (), FileFormat.PROMETHEUS), "", found)
                counts[other] = found.values[other]
            best = next((other for other in close if counts[other]), None)
            out.append(Diagnosis(name, "similar_names", f"no sample named {name!r}; close names: "
                                 + ", ".join(map(repr, close)), "request the metric by its sample name",
                                 Suggestion("metric", best, counts[best]) if best else None))
        else:
            shown = ", ".join(names[:8]) or "none"
            out.append(Diagnosis(name or ANY_METRIC, "not_found", f"no sample named {name!r}; samples: {shown}",
                                 "expose the metric under the requested name"))
    return out
