"""Why a requested metric ended without a value: the cause, evidence from the input, a fix (pure).

The last stage of `parse`, `run`, `check` and the sidecar's exit: given the spec, the input and the
summaries that were computed, `diagnose()` re-reads a bounded sample of the input and names the most
likely cause per unavailable metric (DESIGN "Diagnosis"). A `Suggestion` is only ever made after it
was verified by re-parsing the same sample with the real parser and collecting at least one value.

Causes (stable identifiers): `nothing_read`, `filter_mismatch`, `similar_names`, `not_a_number`,
`not_found`, `json_key_elsewhere`, `not_json_objects`, `tag_elsewhere`, `not_scalar`, and
`merged_directories` (event files: a bare name matched series in several directories, though the
metric has values).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from katib_metrics.parsers.lines import iter_lines
from katib_metrics.parsers.model import UNAVAILABLE, CollectorSpec, FileFormat, MetricSummary

__all__ = [
    "CAUSES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_LINES",
    "Diagnosis",
    "Sample",
    "Suggestion",
    "diagnose",
    "format_diagnosis",
    "lines",
    "quote_line",
    "read_sample",
    "unavailable_names",
]

DEFAULT_MAX_BYTES = 8 << 20
DEFAULT_MAX_LINES = 20_000
"""How much of a text input the diagnosis reads (its head, whichever limit comes first): a few seconds at
most even when every line needs a user regex, and bounded memory, on any log."""

CAUSES = (
    "nothing_read",
    "filter_mismatch",
    "similar_names",
    "not_a_number",
    "not_found",
    "json_key_elsewhere",
    "not_json_objects",
    "tag_elsewhere",
    "not_scalar",
    "merged_directories",
)

ANY_METRIC = ""
"""The `metric` of a diagnosis made when no names were requested and nothing at all was found."""

_SHOWN = 160  # characters of an input line quoted as evidence


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One changed setting, verified on the input: `values` is how many values of the metric it collects.

    `setting` is `metricsFormat` (`value` a tuple of regexes), `metric` (another name), `path` or
    `format` (`value` a string).
    """

    setting: str
    value: str | tuple[str, ...]
    values: int

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {self.setting: value, "values": self.values}

    def as_flags(self) -> str:
        """The same change as command-line flags of `parse`/`run`."""
        if isinstance(self.value, tuple):
            return " ".join(f"-f {_shell_quote(pattern)}" for pattern in self.value)
        if self.setting == "path":
            return f"read {_shell_quote(self.value)} instead"
        flag = {"metric": "-m", "format": "--format"}.get(self.setting, f"--{self.setting}")
        return f"{flag} {_shell_quote(self.value.lower() if self.setting == 'format' else self.value)}"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The most likely reason `metric` has no value (or, for `merged_directories`, mixed values)."""

    metric: str
    cause: str
    evidence: str
    fix: str
    suggestion: Suggestion | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "cause": self.cause,
            "evidence": self.evidence,
            "fix": self.fix,
            "suggestion": None if self.suggestion is None else self.suggestion.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Sample:
    """The head of a text input, in whole lines: what every diagnosis of a line format reads."""

    data: bytes
    where: str
    truncated: bool = False
    unreadable: str | None = None  # why nothing could be read (missing file, ...)

    def lines(self) -> Iterator[str]:
        return iter_lines(io.BytesIO(self.data))

    @property
    def scope(self) -> str:
        """How much was read, for evidence texts: "train.log" or "the first 20000 lines of train.log"."""
        if not self.truncated:
            return self.where
        lines = self.data.count(b"\n")
        return f"the first {lines} lines of {self.where}"


def read_sample(
    path: str, data: bytes | None = None, max_bytes: int = DEFAULT_MAX_BYTES, max_lines: int = DEFAULT_MAX_LINES
) -> Sample:
    """At most `max_lines` whole lines and `max_bytes` from `path` (`data` instead: a buffer kept of stdin)."""
    where = {"": "the command's output", "-": "standard input"}.get(path, path)
    if data is None:
        try:
            with open(path, "rb") as stream:
                data = stream.read(max_bytes + 1)
        except OSError as err:
            return Sample(b"", where, unreadable=f"{where}: {err.strerror or err}")
    end = _end_of_line(data, max_lines)
    truncated = len(data) > max_bytes or end < len(data)
    if truncated:
        data = data[: min(end, max_bytes)]
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else data
    return Sample(data, where, truncated)


def _end_of_line(data: bytes, count: int) -> int:
    """The offset just past the `count`-th newline of `data` (its length when it has fewer lines)."""
    at = -1
    for _ in range(count):
        at = data.find(b"\n", at + 1)
        if at < 0:
            return len(data)
    return at + 1


def unavailable_names(spec: CollectorSpec, summaries: Sequence[MetricSummary]) -> list[str]:
    """The requested metrics without a value; `[ANY_METRIC]` when none was requested and none was found."""
    found = {s.name for s in summaries if s.latest != UNAVAILABLE or s.count}
    if not spec.metric_names:
        return [] if found else [ANY_METRIC]
    return [name for name in spec.metric_names if name not in found]


def diagnose(
    spec: CollectorSpec,
    fmt: FileFormat,
    path: str,
    summaries: Sequence[MetricSummary],
    *,
    data: bytes | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    regex_timeout: float = 1.0,
) -> list[Diagnosis]:
    """One diagnosis per unavailable metric of `spec` (plus merged directories for event files).

    `path` is the file (TEXT, JSON, PROMETHEUS) or event directory (TFEVENT) that was read; `data`,
    when given, replaces the file's content (a bounded buffer kept of standard input or a command's
    output). Reads at most `max_bytes` of a text input; never raises for an unreadable input.
    """
    if fmt is FileFormat.TFEVENT:
        from katib_metrics.parsers.diagnosis_events import diagnose_events

        return diagnose_events(spec, path, summaries)
    missing = unavailable_names(spec, summaries)
    if not missing:
        return []
    sample = read_sample(path, data, max_bytes)
    if sample.unreadable is not None or not sample.data.strip() or b"\0" in sample.data[:4096]:
        return [_nothing_read(spec, name, sample, path) for name in missing]
    if fmt is FileFormat.JSON:
        from katib_metrics.parsers.diagnosis_json import diagnose_json

        return diagnose_json(spec, sample, missing)
    if fmt is FileFormat.PROMETHEUS:
        from katib_metrics.parsers.diagnosis_json import diagnose_exposition

        return diagnose_exposition(spec, sample, missing)
    from katib_metrics.parsers.diagnosis_text import diagnose_text

    return diagnose_text(spec, sample, missing, regex_timeout=regex_timeout)


def _nothing_read(spec: CollectorSpec, metric: str, sample: Sample, path: str) -> Diagnosis:
    if sample.unreadable is not None:
        evidence = f"nothing was read: {sample.unreadable}"
    elif sample.data.strip():
        evidence = f"nothing was read: {sample.where} is binary (NUL bytes at its start), not a text log"
    elif path in ("", "-"):
        evidence = "nothing was read: the input was empty (nothing printed)"
    else:
        evidence = f"nothing was read: {sample.where} is empty"
    fix = "check that the training writes its metrics there (the file path, or print them to stdout)"
    binary = sample.unreadable is None and sample.data.strip()
    suggestion = _path_beside(spec, metric, path) if path not in ("", "-") and metric and not binary else None
    return Diagnosis(metric, "nothing_read", evidence, fix, suggestion)


def _path_beside(spec: CollectorSpec, metric: str, path: str, limit: int = 20) -> Suggestion | None:
    """A file in the same directory from which the metric is collected: the likely right path (verified)."""
    from katib_metrics.parsers.diagnosis_names import count_values

    directory = os.path.dirname(path) or "."
    try:
        entries = sorted((e for e in os.scandir(directory) if e.name != os.path.basename(path)),
                         key=lambda e: e.name)[:limit]
        files = [os.path.join(os.path.dirname(path), e.name) for e in entries if e.is_file() and e.stat().st_size]
    except OSError:
        return None
    for other in files:
        sample = read_sample(other, max_bytes=1 << 20)
        if b"\0" in sample.data[:4096]:
            continue  # binary: not a metrics log
        counts = count_values(spec, sample)
        if values := counts[metric]:
            return Suggestion("path", other, values)
    return None


def format_diagnosis(diagnosis: Diagnosis) -> list[str]:
    """Human lines for one diagnosis: what and why, the fix, and the verified suggestion if any."""
    subject = diagnosis.metric or "no metric"
    lines = [f"{subject}: {diagnosis.evidence} [{diagnosis.cause}]", f"  fix: {diagnosis.fix}"]
    if diagnosis.suggestion is not None:
        s = diagnosis.suggestion
        what = f"{s.values} value{'' if s.values == 1 else 's'}"
        of = f" of {diagnosis.metric}" if diagnosis.metric and s.setting != "metric" else ""
        lines.append(f"  try: {s.as_flags()}   (verified on the input: collects {what}{of})")
    return lines


def lines(count: int) -> str:
    """`1 line`, `2 lines`."""
    return f"{count} line" if count == 1 else f"{count} lines"


def quote_line(lineno: int, line: str) -> str:
    """`line 12: "…"`, cut to a readable length."""
    shown = line if len(line) <= _SHOWN else line[: _SHOWN - 1] + "…"
    return f"line {lineno}: {shown!r}"


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
