"""The one summary table and JSON document of `parse`, `run` and `show`, and the sparklines of `show`."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from katib_metrics.parsers.model import UNAVAILABLE, MetricLog, MetricSummary, ObjectiveType, Strategy
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.observation import batches

__all__ = [
    "SUMMARY_HEADER",
    "json_document",
    "numeric_series",
    "objective_line",
    "plural",
    "render",
    "sparkline",
    "summary_table",
]

SUMMARY_HEADER = ("METRIC", "STRATEGY", "VALUE", "MIN", "MAX", "LATEST", "COUNT")
BARS = "▁▂▃▄▅▆▇█"
ASCII_BARS = "_.-=+*#@"
SPARK_WIDTH = 16


def plural(count: int, noun: str) -> str:
    """`1 row`, `2 rows` (nouns of this tool take an `s`)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def render(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, no trailing blanks."""
    table = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table
    )


def summary_table(
    summaries: Sequence[MetricSummary],
    *,
    trials: Sequence[str] | None = None,
    trends: Sequence[str] | None = None,
) -> str:
    """METRIC STRATEGY VALUE MIN MAX LATEST COUNT, one row per metric; optional TRIAL first, TREND last."""
    if not summaries:
        return "no metrics found"
    header: list[str] = list(SUMMARY_HEADER)
    rows = [[s.name, str(s.strategy), s.value, s.min, s.max, s.latest, str(s.count)] for s in summaries]
    if trials is not None:
        header.insert(0, "TRIAL")
        rows = [[trial, *row] for trial, row in zip(trials, rows, strict=True)]
    if trends is not None:
        header.append("TREND")
        rows = [[*row, trend] for row, trend in zip(rows, trends, strict=True)]
    return render(header, rows)


def objective_line(summaries: Sequence[MetricSummary], objective: str | None, objective_type: ObjectiveType) -> str:
    """Which strategy chose the objective's value, as Katib's experiment controller would take it."""
    found = next((s for s in summaries if s.name == objective), None)
    if objective is None or found is None:
        return "no objective (-m names it first): every metric's value is its latest"
    direction = str(objective_type) or "no --objective-type"
    if found.value == UNAVAILABLE:
        return f"objective {objective}: unavailable (never reported)"
    picked = {Strategy.MIN: found.min, Strategy.MAX: found.max, Strategy.LATEST: found.latest}[found.strategy]
    how = f"strategy {found.strategy}" if picked != UNAVAILABLE else f"latest (no number for {found.strategy})"
    return f"objective {objective} = {found.value}, chosen by {how} ({direction})"


def json_document(logs: Iterable[MetricLog], summaries: Sequence[MetricSummary], **extra: Any) -> str:
    """`{"metric_logs": [...], "observation": {"metrics": [...]}}`, as `parse --output json`; `extra` first."""
    out = io.StringIO()
    write_json_document(out, logs, summaries, **extra)
    return out.getvalue()


def write_json_document(out: TextIO, logs: Iterable[MetricLog], summaries: Sequence[MetricSummary],
                        **extra: Any) -> None:
    """`json_document`, written `_JSON_BATCH` rows at a time: memory never holds the whole log."""
    head = json.dumps(extra)[:-1]
    out.write(head + (", " if extra else "") + '"metric_logs": [')
    for index, batch in enumerate(batches(logs, _JSON_BATCH)):
        out.write(("" if index == 0 else ", ") + ", ".join(json.dumps(log.to_dict()) for log in batch))
    out.write('], "observation": ' + json.dumps({"metrics": [summary.to_dict() for summary in summaries]}) + "}")


_JSON_BATCH = 10_000


def numeric_series(logs: Iterable[MetricLog], name: str) -> list[float]:
    """The metric's numbers in row order (values Go's ParseFloat rejects, and infinities, are left out)."""
    values = []
    for log in logs:
        if log.name == name and (value := parse_go_float(log.value)) is not None and abs(value) != float("inf"):
            values.append(value)
    return values


def series_means(rows: Iterable[MetricLog], width: int = SPARK_WIDTH) -> dict[str, list[float]]:
    """Per metric, what `sparkline` draws of `numeric_series`: its numbers, averaged into `width` shares when
    there are more. Two passes over `rows` (count, then sum; a collection, not an iterator), so memory is
    `width` numbers per metric whatever the number of rows."""
    if iter(rows) is rows:
        raise TypeError("series_means reads its rows twice: pass a collection, not an iterator")
    counts: dict[str, int] = {}
    for log in rows:
        if (value := parse_go_float(log.value)) is not None and abs(value) != float("inf"):
            counts[log.name] = counts.get(log.name, 0) + 1
    shares = {name: _shares(count, width) for name, count in counts.items()}
    sums = {name: [0.0] * len(ends) for name, ends in shares.items()}
    seen = dict.fromkeys(counts, 0)
    share = dict.fromkeys(counts, 0)
    for log in rows:
        if log.name not in seen or (value := parse_go_float(log.value)) is None or abs(value) == float("inf"):
            continue
        index, ends = seen[log.name], shares[log.name]
        seen[log.name] += 1
        while share[log.name] < len(ends) and index >= ends[share[log.name]]:
            share[log.name] += 1
        if share[log.name] < len(ends):
            sums[log.name][share[log.name]] += value
    return {name: [total / (end - start) for total, start, end in zip(sums[name], [0, *ends], ends, strict=False)]
            for name, ends in shares.items()}


def _shares(count: int, width: int) -> list[int]:
    """Where each share of `count` values ends, as `sparkline` cuts them (each value its own share when few)."""
    if count <= width:
        return list(range(1, count + 1))
    step = count / width
    return [max(int((i + 1) * step), int(i * step) + 1) for i in range(width)]


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH, *, ascii_only: bool = False) -> str:
    """At most `width` bars, each the mean of its share of the values, scaled from min to max."""
    if not values:
        return ""
    bars = ASCII_BARS if ascii_only else BARS
    if len(values) > width:
        step = len(values) / width
        values = [_mean(values[int(i * step): max(int((i + 1) * step), int(i * step) + 1)]) for i in range(width)]
    low, high = min(values), max(values)
    if high == low:
        return bars[len(bars) // 2] * len(values)
    top = len(bars) - 1
    return "".join(bars[round((value - low) / (high - low) * top)] for value in values)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
