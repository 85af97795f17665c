"""An observation log's rows a batch at a time, and its end: Katib's `unavailable` row for a missing objective
(DESIGN difference 4)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from itertools import islice

from katib_metrics.parsers.model import CollectorSpec, MetricLog

__all__ = ["batches", "unavailable_rows"]


def unavailable_rows(spec: CollectorSpec, seen_names: Collection[str]) -> list[MetricLog]:
    """One `unavailable` row for the objective when it never appeared; the other metrics are kept."""
    objective = spec.objective
    if objective is None or objective in seen_names:
        return []
    return [MetricLog.unavailable(objective)]


def batches(rows: Iterable[MetricLog], size: int) -> Iterator[list[MetricLog]]:
    """`rows` in lists of `size` (the last one shorter): a log of any length, one list in memory at a time."""
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
