"""The sidecar's own `/metrics`: a reporter that reads the collection status when scraped (prometheus_client).

Everything lives in a registry of its own (never prometheus_client's global one), and every sample
carries the `trial` label: a sidecar serves exactly one trial. Two kinds of input:

* the collection status (lines and events read, values recorded and skipped, latest and best value
  per metric) is *read* from a `CollectionStatus` — the sidecar's store — each time `/metrics` is
  scraped, so the pipeline never pushes into the exposition;
* report outcomes, retries and durations arrive as events: `CollectorMetrics` is the reporting
  client's `ReportObserver`.

Metric names (DESIGN "Metric names", "Collector metric semantics"):

    katib_collector_info{trial,version,objective_type}            1
    katib_collector_lines_total{trial}                            every line read, with or without metrics
    katib_collector_events_total{trial}                           TensorFlow events read
    katib_collector_metric_values_total{trial,metric}             values recorded per requested metric
    katib_collector_values_skipped_total{trial,reason}            values/lines skipped, by `SkipReason`
    katib_collector_metric_latest{trial,metric}                   latest value (absent until there is one)
    katib_collector_metric_best{trial,metric}                     max/min/latest as the objective type says
    katib_collector_reports_total{trial,outcome}                  whole reports: success, retried, failed
    katib_collector_report_retries_total{trial,code}              retried attempts by gRPC status code
    katib_collector_reported_rows_total{trial}                    rows the db-manager acknowledged
    katib_collector_report_duration_seconds{trial}                histogram of whole reports
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from katib_metrics.collector.metrics_server import (
    MetricsServer,
    MetricsServerError,
    serve_metrics,
    start_metrics_server,
)
from katib_metrics.collector.report.observer import ReportOutcome
from katib_metrics.parsers.model import UNAVAILABLE, MetricSummary, ObjectiveType, Strategy
from katib_metrics.parsers.numbers import format_number, parse_go_float
from katib_metrics.parsers.stats import SkipReason

__all__ = [
    "REPORT_DURATION_BUCKETS",
    "CollectionStatus",
    "CollectorMetrics",
    "MetricsServer",
    "MetricsServerError",
    "serve_metrics",
    "start_metrics_server",
]

REPORT_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""A report takes milliseconds on loopback and up to `--report-timeout` (300 s) while retrying."""


class CollectionStatus(Protocol):
    """What `/metrics` reads from the sidecar's store at scrape time. Must be thread-safe and quick.

    `metric_summaries()` lists the requested metrics (values recorded = `count`, min/max/latest as
    strings, `"unavailable"` when there is none yet); `values_skipped()` is keyed by `SkipReason` value.
    """

    def lines_read(self) -> int: ...

    def events_read(self) -> int: ...

    def values_skipped(self) -> Mapping[str, int]: ...

    def metric_summaries(self) -> Sequence[MetricSummary]: ...


class CollectorMetrics:
    """The sidecar's registry: status read from the store, report events counted here (a `ReportObserver`)."""

    def __init__(
        self,
        trial: str,
        objective_type: ObjectiveType,
        status: CollectionStatus,
        *,
        version: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.trial = trial
        self.registry = registry if registry is not None else CollectorRegistry()
        self._reports = _ReportTally()
        self.registry.register(_StatusCollector(trial, objective_type, status, version or _own_version()))
        self.registry.register(_ReportCollector(trial, self._reports))

    def retrying(self, code: str, pause: float) -> None:
        with self._reports.lock:
            self._reports.retries[code] += 1

    def finished(self, outcome: ReportOutcome, seconds: float, rows: int) -> None:
        self._reports.add(str(outcome), max(seconds, 0.0), rows)

    def render(self) -> bytes:
        """The exposition text (format 0.0.4), as `/metrics` serves it to a plain scraper."""
        return generate_latest(self.registry)


@dataclass
class _ReportTally:
    """Report events so far; written by the reporting thread, read by scrapes, both under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(REPORT_DURATION_BUCKETS))

    def add(self, outcome: str, seconds: float, rows: int) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.rows += rows
            self.seconds += seconds
            for index, bound in enumerate(REPORT_DURATION_BUCKETS):
                if seconds <= bound:
                    self.buckets[index] += 1


class _ReportCollector(Collector):
    """Renders the report tally: outcomes (all present from the start, at 0), retries, rows, durations."""

    def __init__(self, trial: str, tally: _ReportTally) -> None:
        self._trial = trial
        self._tally = tally

    def collect(self) -> Iterator[Metric]:
        tally, trial = self._tally, self._trial
        with tally.lock:
            outcomes, retries = dict(tally.outcomes), dict(tally.retries)
            rows, seconds, buckets = tally.rows, tally.seconds, list(tally.buckets)
        reports = CounterMetricFamily(
            "katib_collector_reports",
            "Whole observation-log reports, by outcome.",
            labels=["trial", "outcome"],
        )
        for outcome in sorted({str(known) for known in ReportOutcome} | set(outcomes)):
            reports.add_metric([trial, outcome], outcomes.get(outcome, 0))
        retried = CounterMetricFamily(
            "katib_collector_report_retries",
            "Report attempts retried, by gRPC status code.",
            labels=["trial", "code"],
        )
        for code in sorted(retries):
            retried.add_metric([trial, code], retries[code])
        yield reports
        yield retried
        yield _counter("katib_collector_reported_rows", "Rows the db-manager acknowledged.", trial, rows)
        yield _duration(trial, buckets, sum(outcomes.values()), seconds)


def _duration(trial: str, buckets: list[int], count: int, seconds: float) -> Metric:
    family = HistogramMetricFamily(
        "katib_collector_report_duration_seconds",
        "Duration of whole reports, retries included.",
        labels=["trial"],
    )
    pairs = [
        (format_number(bound), float(n)) for bound, n in zip(REPORT_DURATION_BUCKETS, buckets, strict=True)
    ]
    family.add_metric([trial], [*pairs, ("+Inf", float(count))], seconds)
    return family


class _StatusCollector(Collector):
    """A custom collector: builds the status families from one read of the store per scrape."""

    def __init__(self, trial: str, objective: ObjectiveType, status: CollectionStatus, version: str) -> None:
        self._trial = trial
        self._best = Strategy.default_for(objective)  # Katib's defaulting: every metric follows the objective
        self._objective = objective
        self._status = status
        self._version = version

    def collect(self) -> Iterator[Metric]:
        trial, status = self._trial, self._status
        yield _info(trial, self._version, self._objective)
        yield _counter(
            "katib_collector_lines", "Lines read, with or without metrics.", trial, status.lines_read()
        )
        yield _counter("katib_collector_events", "TensorFlow events read.", trial, status.events_read())
        yield from self._per_metric(list(self._status.metric_summaries()))
        yield self._skipped(self._status.values_skipped())

    def _per_metric(self, summaries: Sequence[MetricSummary]) -> Iterator[Metric]:
        labels = ["trial", "metric"]
        values = CounterMetricFamily(
            "katib_collector_metric_values", "Values recorded, per requested metric.", labels=labels
        )
        latest = GaugeMetricFamily(
            "katib_collector_metric_latest", "Latest value of each metric.", labels=labels
        )
        best = GaugeMetricFamily(
            "katib_collector_metric_best",
            "Best value of each metric, as the objective type says.",
            labels=labels,
        )
        for summary in summaries:
            key = [self._trial, summary.name]
            values.add_metric(key, summary.count)
            _add_if_number(latest, key, summary.latest)
            _add_if_number(best, key, _pick(summary, self._best))
        return iter((values, latest, best))

    def _skipped(self, skipped: Mapping[str, int]) -> Metric:
        family = CounterMetricFamily(
            "katib_collector_values_skipped",
            "Values or lines skipped, by reason.",
            labels=["trial", "reason"],
        )
        for reason in sorted({str(reason) for reason in SkipReason} | set(skipped)):
            family.add_metric([self._trial, reason], skipped.get(reason, 0))
        return family


def _info(trial: str, version: str, objective: ObjectiveType) -> Metric:
    info = InfoMetricFamily("katib_collector", "The metrics collector sidecar and the trial it serves.")
    info.add_metric([], {"trial": trial, "version": version, "objective_type": str(objective) or "none"})
    return info


def _counter(name: str, documentation: str, trial: str, value: int) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=["trial"])
    family.add_metric([trial], value)
    return family


def _pick(summary: MetricSummary, strategy: Strategy) -> str:
    return {Strategy.MIN: summary.min, Strategy.MAX: summary.max, Strategy.LATEST: summary.latest}[strategy]


def _add_if_number(family: GaugeMetricFamily, labels: list[str], text: str) -> None:
    value = None if text == UNAVAILABLE else parse_go_float(text)
    if value is not None:
        family.add_metric(labels, value)


def _own_version() -> str:
    try:
        return importlib.metadata.version("katib-metrics-collector")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
