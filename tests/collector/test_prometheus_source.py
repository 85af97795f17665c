"""The PrometheusMetric source on real HTTP servers: only new values, refused is normal, errors counted."""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from katib_metrics.collector.sources.prometheus import PrometheusSource, check_url, scrape_url
from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipReason, SkipSink

NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
T = "2023-11-14T22:13:20Z"


class Exposition(ThreadingHTTPServer):
    """A training's `/metrics` whose text, status and speed a test changes between scrapes."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.text = ""
        self.status = 200
        self.gzip = False
        self.gzip_body: bytes | None = None  # served as is, with Content-Encoding: gzip
        self.release = threading.Event()
        self.hold = False
        self.requests = 0
        self.accept = ""
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/metrics"


class _Handler(BaseHTTPRequestHandler):
    server: Exposition

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.requests += 1
            server.accept = self.headers.get("Accept", "")
        if server.hold:
            server.release.wait(10)  # a slow endpoint; the test releases it when done
        body = server.text.encode()
        if server.gzip:
            body = gzip.compress(body)
        if server.gzip_body is not None:
            body, server.gzip = server.gzip_body, True
        self.send_response(server.status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        if server.gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is for failures."""


def _serve(port: int = 0) -> Exposition:
    server = Exposition(port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def endpoint() -> Iterator[Exposition]:
    server = _serve()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


class Clock:
    """Monotonic and wall clocks that move only when the test says so."""

    def __init__(self) -> None:
        self.mono = 0.0
        self.ns = NS

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.ns += int(seconds * 1e9)


def source(
    url: str,
    *names: str,
    clock: Clock | None = None,
    interval: float = 1.0,
    timeout: float = 5.0,
    stats: ParseStats | None = None,
    on_skip: SkipSink | None = None,
) -> PrometheusSource:
    moments = clock or Clock()
    return PrometheusSource(
        CollectorSpec(metric_names=names),
        url,
        interval=interval,
        timeout=timeout,
        stats=stats,
        on_skip=on_skip,
        monotonic=lambda: moments.mono,
        wall_ns=lambda: moments.ns,
    )


def test_only_new_values_are_recorded(endpoint: Exposition) -> None:
    clock = Clock()
    src = source(endpoint.url, "accuracy", "loss", clock=clock)
    endpoint.text = 'accuracy{split="val"} 0.5\naccuracy{split="train"} 0.6\nloss 2\nother 1\n'
    assert src.read() == [
        MetricLog(T, "accuracy", "0.5"),
        MetricLog(T, "accuracy", "0.6"),
        MetricLog(T, "loss", "2"),
    ]
    clock.advance(1)
    assert src.read() == []  # nothing changed: no repeated observation
    endpoint.text = 'accuracy{split="val"} 0.7\naccuracy{split="train"} 0.6\nloss 2\n'
    clock.advance(1)
    assert src.read() == [MetricLog("2023-11-14T22:13:22Z", "accuracy", "0.7")]
    endpoint.text = 'accuracy{split="val"} 0.5\naccuracy{split="train"} 0.6\nloss 2\n'
    clock.advance(1)
    assert src.read() == [MetricLog("2023-11-14T22:13:23Z", "accuracy", "0.5")]  # back to 0.5 is news


def test_a_new_sample_timestamp_is_news_even_with_the_same_value(endpoint: Exposition) -> None:
    clock = Clock()
    src = source(endpoint.url, "loss", clock=clock)
    endpoint.text = "loss 0.25 1700000000500\n"
    assert src.read() == [MetricLog("2023-11-14T22:13:20.5Z", "loss", "0.25")]
    clock.advance(1)
    endpoint.text = "loss 0.25 1700000001500\n"
    assert src.read() == [MetricLog("2023-11-14T22:13:21.5Z", "loss", "0.25")]


def test_read_scrapes_only_when_the_interval_is_due(endpoint: Exposition) -> None:
    clock = Clock()
    src = source(endpoint.url, "loss", clock=clock, interval=1.0)
    endpoint.text = "loss 1\n"
    assert len(src.read()) == 1
    clock.advance(0.5)
    endpoint.text = "loss 2\n"
    assert src.read() == []
    assert endpoint.requests == 1
    clock.advance(0.5)
    assert [row.value for row in src.read()] == ["2"]
    assert endpoint.requests == 2
    endpoint.text = "loss 3\n"
    assert [row.value for row in src.flush()] == ["3"]  # the final scrape does not wait for the interval


def test_wait_returns_on_wake_and_not_before_when_due_later(endpoint: Exposition) -> None:
    clock = Clock()
    src = source(endpoint.url, "loss", clock=clock, interval=3600.0)
    endpoint.text = "loss 1\n"
    src.read()
    threading.Timer(0.05, src.wake).start()
    src.wait(30.0)  # bounded by the wake-up, not by the hour-long interval (pytest-timeout guards it)
    src.wake()
    src.wait(30.0)


def test_connection_refused_before_the_training_serves_is_counted_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stats = ParseStats()
    src = source(f"http://127.0.0.1:{port}/metrics", "loss", stats=stats)
    with caplog.at_level(logging.WARNING):
        assert src.read() == []
        assert src.flush() == []
    assert (src.scrape_stats.refused, src.scrape_stats.failed) == (2, 0)
    assert "refused" in src.scrape_stats.last_error.lower()
    assert caplog.records == []
    server = _serve(port)
    try:
        server.text = "loss 0.5\n"
        assert [row.value for row in src.flush()] == ["0.5"]
        assert src.scrape_stats.scrapes == 3
    finally:
        server.shutdown()
        server.server_close()


def test_http_errors_are_counted_and_logged_once(
    endpoint: Exposition, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.status = 503
    src = source(endpoint.url, "loss")
    with caplog.at_level(logging.WARNING):
        assert src.flush() == []
        assert src.flush() == []
    assert src.scrape_stats.failed == 2
    assert [record.getMessage() for record in caplog.records] == [
        f"scraping {endpoint.url} failed: HTTP 503 Service Unavailable; retrying every 1s"
    ]
    endpoint.status = 200
    endpoint.text = "loss 1\n"
    assert [row.value for row in src.flush()] == ["1"]


def test_a_hanging_endpoint_times_out(endpoint: Exposition) -> None:
    endpoint.hold = True
    src = source(endpoint.url, "loss", timeout=0.2)
    assert src.flush() == []
    assert src.scrape_stats.failed == 1
    assert "timed out" in src.scrape_stats.last_error


def test_gzip_bodies_and_the_accept_header(endpoint: Exposition) -> None:
    endpoint.text, endpoint.gzip = "loss 4\n", True
    assert [row.value for row in source(endpoint.url, "loss").flush()] == ["4"]
    assert endpoint.accept.startswith("text/plain;version=0.0.4")


def _bomb(expanded_mib: int) -> bytes:
    """A gzip body of a few hundred KiB that expands to `expanded_mib` MiB: one member repeated (gzip
    reads concatenated members as one stream)."""
    member = gzip.compress(b"\0" * (8 << 20), compresslevel=9)
    return member * (expanded_mib // 8)


def test_a_gzip_bomb_is_refused_while_it_expands(endpoint: Exposition) -> None:
    endpoint.gzip_body = _bomb(1024)  # 1 GiB expanded, about 8 KiB x 128 on the wire
    assert len(endpoint.gzip_body) < 2 << 20
    src = source(endpoint.url, "loss")
    tracemalloc.start()
    try:
        assert src.flush() == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert src.scrape_stats.failed == 1
    assert "expands to more than 33554432 bytes" in src.scrape_stats.last_error
    # The limit (32 MiB) plus the compressed body and one inflate step; gzip.decompress held 1 GiB.
    assert peak < 48 << 20, f"peak {peak >> 20} MiB"


def test_gzip_bodies_just_under_the_limit_and_multi_member_bodies_are_read(endpoint: Exposition) -> None:
    endpoint.gzip_body = gzip.compress(b"loss 1\n") + gzip.compress(b"# filler\n" * 100_000 + b"acc 2\n")
    assert [(row.name, row.value) for row in source(endpoint.url, "loss", "acc").flush()] == [
        ("loss", "1"), ("acc", "2")]
    endpoint.gzip_body = gzip.compress(b"loss 1\n")[:-6]  # the trailer cut off
    src = source(endpoint.url, "loss")
    assert src.flush() == []
    assert "bad gzip body" in src.scrape_stats.last_error


def test_stats_count_lines_new_values_and_new_skips_only(endpoint: Exposition) -> None:
    stats = ParseStats()
    skips: list[Skipped] = []
    src = source(endpoint.url, "loss", stats=stats, on_skip=skips.append)
    endpoint.text = "loss 1\nbroken{ 1\nloss_total abc\n"
    src.flush()
    src.flush()
    assert stats.lines == 6
    assert stats.values == {"loss": 1}
    assert stats.skipped == {SkipReason.BAD_RECORD: 1, SkipReason.NOT_A_NUMBER: 1}
    assert [skip.where for skip in skips] == [2, 3]
    endpoint.text = "loss 2\nbroken{ 2\n"
    src.flush()
    assert stats.values == {"loss": 2}
    assert stats.skipped[SkipReason.BAD_RECORD] == 2


def test_a_real_client_library_endpoint() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("val_accuracy", "validation accuracy", ["model"], registry=registry)
    httpd, thread = start_http_server(0, "127.0.0.1", registry)
    try:
        src = source(f"http://127.0.0.1:{httpd.server_port}/metrics", "val_accuracy")
        assert src.flush() == []
        gauge.labels("resnet").set(0.75)
        assert src.flush() == [MetricLog(T, "val_accuracy", "0.75")]
        gauge.labels("resnet").set(0.8125)
        assert src.flush() == [MetricLog(T, "val_accuracy", "0.8125")]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_scrape_url_defaults_and_validation() -> None:
    assert scrape_url() == "http://localhost:8080/metrics"
    assert scrape_url(9090, "/custom") == "http://localhost:9090/custom"
    with pytest.raises(SpecError, match="port 0"):
        scrape_url(0)
    with pytest.raises(SpecError, match="must start with '/'"):
        scrape_url(8080, "metrics")
    with pytest.raises(SpecError, match="invalid Prometheus URL 'localhost:8080'"):
        PrometheusSource(CollectorSpec(("loss",)), "localhost:8080")
    for bad in ("http://localhost:99999/metrics", "http://localhost:port/metrics", "http://:8080/metrics",
                "ftp://localhost:8080/metrics", "http://localhost:0/metrics", "http://local host:80/x"):
        with pytest.raises(SpecError, match="invalid Prometheus URL"):
            check_url(bad)
    assert check_url("https://[::1]:9090/m?x=1") == "https://[::1]:9090/m?x=1"
    with pytest.raises(SpecError, match="selector"):
        PrometheusSource(CollectorSpec(("loss{split=val}",)))
