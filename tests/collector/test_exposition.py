"""The sidecar's `/metrics`: names, labels, best by objective, report events, promtool, real Prometheus."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Mapping, Sequence

import grpc
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from katib_metrics.collector.exposition import (
    CollectorMetrics,
    MetricsServer,
    MetricsServerError,
    serve_metrics,
    start_metrics_server,
)
from katib_metrics.collector.report.client import DBManagerReporter
from katib_metrics.collector.report.observer import ReportOutcome
from katib_metrics.collector.report.retry import RetryPolicy
from katib_metrics.parsers.model import CollectorSpec, MetricLog, MetricSummary, ObjectiveType
from katib_metrics.parsers.prometheus import parse_exposition
from tests.collector.grpc_doubles import RecordingDBManager, start_server
from tests.prom_fixture import (
    PrometheusServer,
    prometheus,  # noqa: F401  (a fixture)
    promtool_check_metrics,
    requires_promtool,
)

TRIAL = "mnist-random-x7k2p"


class Status:
    """A thread-safe `CollectionStatus` a test can change while `/metrics` is being scraped."""

    def __init__(self, *summaries: MetricSummary) -> None:
        self._lock = threading.Lock()
        self.lines = 0
        self.events = 0
        self.skipped: dict[str, int] = {}
        self.summaries = list(summaries)

    def lines_read(self) -> int:
        with self._lock:
            return self.lines

    def events_read(self) -> int:
        with self._lock:
            return self.events

    def values_skipped(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self.skipped)

    def metric_summaries(self) -> Sequence[MetricSummary]:
        with self._lock:
            return list(self.summaries)

    def set_summaries(self, *summaries: MetricSummary) -> None:
        with self._lock:
            self.summaries = list(summaries)


def accuracy(latest: str = "0.8", low: str = "0.1", high: str = "0.9", count: int = 3) -> MetricSummary:
    return MetricSummary("accuracy", min=low, max=high, latest=latest, count=count)


def sample(metrics: CollectorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"trial": TRIAL, **labels})


def test_status_is_read_at_scrape_time() -> None:
    status = Status(accuracy(), MetricSummary("loss", "0.2", "0.7", "0.3", 3))
    status.lines, status.events, status.skipped = 120, 7, {"not_a_number": 2}
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, status, version="9.9.9")
    assert sample(metrics, "katib_collector_lines_total") == 120
    assert sample(metrics, "katib_collector_events_total") == 7
    assert sample(metrics, "katib_collector_metric_values_total", metric="accuracy") == 3
    assert sample(metrics, "katib_collector_metric_latest", metric="loss") == 0.3
    assert sample(metrics, "katib_collector_values_skipped_total", reason="not_a_number") == 2
    assert sample(metrics, "katib_collector_values_skipped_total", reason="regex_timeout") == 0
    info = {"version": "9.9.9", "objective_type": "maximize"}
    assert sample(metrics, "katib_collector_info", **info) == 1
    status.lines = 121
    status.set_summaries(accuracy(latest="0.85", count=4))
    assert sample(metrics, "katib_collector_lines_total") == 121
    assert sample(metrics, "katib_collector_metric_latest", metric="accuracy") == 0.85
    assert sample(metrics, "katib_collector_metric_latest", metric="loss") is None


@pytest.mark.parametrize(
    ("objective", "best"),
    [(ObjectiveType.MAXIMIZE, 0.9), (ObjectiveType.MINIMIZE, 0.1), (ObjectiveType.UNKNOWN, 0.8)],
)
def test_best_follows_the_objective_type_for_every_metric(objective: ObjectiveType, best: float) -> None:
    loss = MetricSummary("loss", min="0.1", max="0.9", latest="0.8", count=3)
    metrics = CollectorMetrics(TRIAL, objective, Status(accuracy(), loss))
    assert sample(metrics, "katib_collector_metric_best", metric="accuracy") == best
    assert sample(metrics, "katib_collector_metric_best", metric="loss") == best


def test_unavailable_metrics_have_a_count_but_no_value() -> None:
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MINIMIZE, Status(MetricSummary("loss")))
    assert sample(metrics, "katib_collector_metric_values_total", metric="loss") == 0
    assert sample(metrics, "katib_collector_metric_latest", metric="loss") is None
    assert sample(metrics, "katib_collector_metric_best", metric="loss") is None


def test_special_values_are_exposed_as_floats() -> None:
    status = Status(MetricSummary("loss", min="-Inf", max="+Inf", latest="1e-05", count=3))
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MINIMIZE, status)
    assert sample(metrics, "katib_collector_metric_best", metric="loss") == float("-inf")
    assert sample(metrics, "katib_collector_metric_latest", metric="loss") == 1e-05


def test_report_events_are_counted_by_outcome_with_durations() -> None:
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, Status())
    for outcome in ReportOutcome:
        assert sample(metrics, "katib_collector_reports_total", outcome=str(outcome)) == 0
    metrics.retrying("UNAVAILABLE", 0.5)
    metrics.finished(ReportOutcome.RETRIED, 0.7, 20)
    metrics.finished(ReportOutcome.SUCCESS, 0.02, 5)
    assert sample(metrics, "katib_collector_reports_total", outcome="retried") == 1
    assert sample(metrics, "katib_collector_reports_total", outcome="success") == 1
    assert sample(metrics, "katib_collector_report_retries_total", code="UNAVAILABLE") == 1
    assert sample(metrics, "katib_collector_reported_rows_total") == 25
    assert sample(metrics, "katib_collector_report_duration_seconds_count") == 2
    assert sample(metrics, "katib_collector_report_duration_seconds_sum") == pytest.approx(0.72)
    assert sample(metrics, "katib_collector_report_duration_seconds_bucket", le="0.025") == 1
    assert sample(metrics, "katib_collector_report_duration_seconds_bucket", le="1") == 2


def test_it_observes_a_real_reporter_against_a_real_grpc_server() -> None:
    db = RecordingDBManager(script=lambda n: grpc.StatusCode.UNAVAILABLE if n == 1 else None)
    server, address = start_server(db)
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, Status())
    try:
        policy = RetryPolicy(budget=10.0, call_timeout=5.0, initial_backoff=0.01, max_backoff=0.05)
        with DBManagerReporter(address, policy=policy, observer=metrics) as reporter:
            reporter.report(TRIAL, [MetricLog("2024-01-01T00:00:00Z", "accuracy", "0.5")] * 3)
    finally:
        server.stop(None)
    assert sample(metrics, "katib_collector_reports_total", outcome="retried") == 1
    assert sample(metrics, "katib_collector_report_retries_total", code="UNAVAILABLE") == 1
    assert sample(metrics, "katib_collector_reported_rows_total") == 3


def test_it_uses_its_own_registry_not_the_global_one() -> None:
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, Status(accuracy()))
    assert REGISTRY.get_sample_value("katib_collector_lines_total", {"trial": TRIAL}) is None
    shared = CollectorRegistry()
    CollectorMetrics("other", ObjectiveType.MAXIMIZE, Status(), registry=shared)
    assert shared.get_sample_value("katib_collector_lines_total", {"trial": "other"}) == 0
    assert metrics.registry is not shared


@requires_promtool
def test_exposition_passes_promtool_check_metrics() -> None:
    status = Status(accuracy(), MetricSummary("loss"), MetricSummary("val/loss", "1", "2", "NaN", 2))
    status.skipped = {"not_a_number": 1, "bad_record": 4}
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, status)
    metrics.retrying("DEADLINE_EXCEEDED", 1.0)
    metrics.finished(ReportOutcome.FAILED, 300.5, 0)
    checked = promtool_check_metrics(metrics.render())
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_serve_metrics_port_zero_means_off() -> None:
    assert serve_metrics(0, registry=CollectorRegistry()) is None


def _get(server: MetricsServer, accept: str = "") -> tuple[str, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(server.url, headers={"Accept": accept} if accept else {})
    with opener.open(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_served_over_http_in_both_text_formats() -> None:
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, Status(accuracy()))
    server = start_metrics_server("127.0.0.1", 0, registry=metrics.registry)
    try:
        assert server.port > 0
        for accept in ("", "application/openmetrics-text;version=1.0.0"):
            content_type, text = _get(server, accept)
            rows = parse_exposition(text, CollectorSpec(("katib_collector_metric_latest",)), "now")
            assert [row.value for row in rows] == ["0.8"], content_type
    finally:
        server.close()


def test_a_taken_port_is_a_clear_error() -> None:
    first = start_metrics_server("127.0.0.1", 0, registry=CollectorRegistry())
    try:
        with pytest.raises(MetricsServerError, match=rf"127\.0\.0\.1:{first.port}.*--metrics-port"):
            serve_metrics(first.port, "127.0.0.1", registry=CollectorRegistry())
    finally:
        first.close()
    with pytest.raises(MetricsServerError, match="invalid metrics port 70000"):
        serve_metrics(70000, registry=CollectorRegistry())


def test_a_real_prometheus_scrapes_latest_and_best_per_trial(
    prometheus: Callable[..., PrometheusServer],  # noqa: F811
) -> None:
    status = Status(accuracy(), MetricSummary("loss", "0.2", "0.7", "0.3", 3))
    status.lines = 42
    metrics = CollectorMetrics(TRIAL, ObjectiveType.MAXIMIZE, status)
    metrics.finished(ReportOutcome.SUCCESS, 0.01, 6)
    server = start_metrics_server("127.0.0.1", 0, registry=metrics.registry)
    try:
        prom = prometheus([f"127.0.0.1:{server.port}"])
        latest = prom.wait_for(f'katib_collector_metric_latest{{trial="{TRIAL}",metric="accuracy"}}')
        assert [float(series["value"][1]) for series in latest] == [0.8]
        assert latest[0]["metric"]["job"] == "katib"
        best = {
            s["metric"]["metric"]: float(s["value"][1]) for s in prom.query("katib_collector_metric_best")
        }
        assert best == {"accuracy": 0.9, "loss": 0.7}
        assert float(prom.query(f'katib_collector_lines_total{{trial="{TRIAL}"}}')[0]["value"][1]) == 42
        reports = prom.query('katib_collector_reports_total{outcome="success"}')
        assert [float(series["value"][1]) for series in reports] == [1]
        status.set_summaries(accuracy(latest="0.95", high="0.95", count=4))
        prom.wait_for(
            f'katib_collector_metric_best{{trial="{TRIAL}",metric="accuracy"}} == 0.95',
            lambda result: len(result) == 1,
        )
    finally:
        server.close()
