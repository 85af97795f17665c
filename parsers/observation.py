"""The end of a collection: Katib's `unavailable` row for a missing objective (DESIGN difference 4)."""

from __future__ import annotations

from collections.abc import Collection

from katib_metrics.parsers.model import CollectorSpec, MetricLog

__all__ = ["unavailable_rows"]


def unavailable_rows(spec: CollectorSpec, seen_names: Collection[str]) -> list[MetricLog]:
    """One `unavailable` row for the objective when it never appeared; the other metrics are kept."""
    objective = spec.objective
    if objective is None or objective in seen_names:
        return []
    return [MetricLog.unavailable(objective)]
