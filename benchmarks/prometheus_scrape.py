"""Benchmark of the PrometheusMetric path: exposition parsing, one scrape with dedup, `/metrics` rendering.

Run: `python benchmarks/prometheus_scrape.py [SERIES]` (default 10,000 series). Prints samples/s of
`parse_exposition`, the wall time of one `PrometheusSource` scrape of a real loopback HTTP endpoint
(first scrape: all new; second: nothing new), and the time to render the sidecar's own `/metrics`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from katib_metrics.collector.exposition import CollectorMetrics
from katib_metrics.collector.sources.prometheus import PrometheusSource
from katib_metrics.parsers.model import CollectorSpec, MetricSummary, ObjectiveType
from katib_metrics.parsers.prometheus import parse_exposition


def exposition(series: int) -> str:
    lines = ["# HELP accuracy Validation accuracy.", "# TYPE accuracy gauge"]
    lines += [f'accuracy{{layer="{i}",split="val"}} {i / series!r}' for i in range(series)]
    return "\n".join(lines) + "\n"


def best_of(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def serve(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Status:
    def __init__(self, metrics: int) -> None:
        self._summaries = [MetricSummary(f"m{i}", "0.1", "0.9", "0.5", 10) for i in range(metrics)]

    def lines_read(self) -> int:
        return 1_000_000

    def events_read(self) -> int:
        return 0

    def values_skipped(self) -> dict[str, int]:
        return {"not_a_number": 3}

    def metric_summaries(self) -> list[MetricSummary]:
        return self._summaries


def main() -> None:
    series = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    text = exposition(series)
    parse_all = best_of(5, lambda: parse_exposition(text, CollectorSpec(("accuracy",)), "t"))
    print(
        f"parse_exposition: {series} samples in {parse_all * 1e3:.1f} ms, {series / parse_all:,.0f} samples/s"
    )
    server = serve(text.encode())
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        source = PrometheusSource(CollectorSpec(("accuracy",)), url)
        first = best_of(1, source.flush)
        again = best_of(5, source.flush)
        print(
            f"scrape + dedup of {series} series: first {first * 1e3:.1f} ms, unchanged {again * 1e3:.1f} ms"
        )
    finally:
        server.shutdown()
        server.server_close()
    metrics = CollectorMetrics("trial", ObjectiveType.MAXIMIZE, _Status(20))
    render = best_of(20, metrics.render)
    print(f"/metrics render with 20 metrics: {render * 1e3:.2f} ms ({len(metrics.render())} bytes)")


if __name__ == "__main__":
    main()
