"""The `PrometheusMetric` source: scrapes the training's `/metrics` endpoint and yields its new MetricLogs.

First stage of the pipeline for kind `PrometheusMetric` (DESIGN difference 11), a `LogSource`. Every
poll interval it GETs `http://localhost:<port><path>` (Katib's defaults: port 8080, path `/metrics`)
with a timeout, parses the text with `parsers.prometheus` (the scrape time is the time of samples
without their own timestamp) and returns the rows that are new.

What "new" means: a scrape shows the *current* value of each series, not a history, so reporting
every scrape would repeat one observation once per interval and the row count would measure time,
not training. A series is recorded when it first appears and then whenever its value or its own
timestamp changes. So a value set once is one row; a value that goes 0.5 → 0.7 → 0.5 is three rows;
min, max and latest are what the training set; latest carries the time the change was first seen.
A value that changes twice between two scrapes shows only its last state: the interval (`-p`) bounds
what can be missed. The final `flush()` scrapes once more, for values set just before the end.

Trouble policy: connection refused is the normal state before the training serves its endpoint
(and after it exits), so it is counted, not logged loudly; any other failure (HTTP error, timeout,
oversized or undecodable body) is counted and logged once per distinct error; the next poll tries
again. Skipped lines are counted once for each time they newly appear, like values.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.prometheus import (
    Labels,
    compile_selectors,
    iter_samples,
    line_count,
    rfc3339_from_ns,
    select_samples,
    to_metric_log,
)
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipSink, report_skip

__all__ = ["DEFAULT_PATH", "DEFAULT_PORT", "PrometheusSource", "ScrapeStats", "check_url", "scrape_url"]

DEFAULT_PORT = 8080
DEFAULT_PATH = "/metrics"
MAX_BODY_BYTES = 32 * 1024 * 1024
_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"

log = logging.getLogger(__name__)

_SeriesKey = tuple[str, str, Labels]


def scrape_url(port: int = DEFAULT_PORT, path: str = DEFAULT_PATH, host: str = "localhost") -> str:
    """`http://host:port/path`, validated as Katib validates `source.httpGet` of a PrometheusMetric."""
    if not 1 <= port <= 65535:
        raise SpecError(
            f"invalid Prometheus port {port}: expected 1-65535 (Katib's default is {DEFAULT_PORT})"
        )
    if not path.startswith("/"):
        raise SpecError(f"invalid Prometheus path {path!r}: it must start with '/', e.g. {DEFAULT_PATH}")
    return f"http://{host}:{port}{path}"


@dataclass
class ScrapeStats:
    """What the scrapes did; `wait_for` lets tests and the pipeline wait on it instead of sleeping."""

    scrapes: int = 0
    refused: int = 0
    failed: int = 0
    last_error: str = ""
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def count(self, outcome: str, error: str = "") -> None:
        with self._cond:
            self.scrapes += 1
            if outcome == "refused":
                self.refused += 1
            elif outcome == "failed":
                self.failed += 1
            if error:
                self.last_error = error
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[ScrapeStats], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


class _ScrapeFailed(Exception):
    """One scrape got no exposition text; `refused` tells the normal case from the others."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class PrometheusSource:
    """A `LogSource` over one Prometheus endpoint; `read()` scrapes when the poll interval is due."""

    def __init__(
        self,
        spec: CollectorSpec,
        url: str | None = None,
        *,
        interval: float = 1.0,
        timeout: float = 5.0,
        stats: ParseStats | None = None,
        on_skip: SkipSink | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.url = check_url(url or scrape_url())
        self.interval = interval
        self.timeout = timeout
        self.scrape_stats = ScrapeStats()
        self._selectors = compile_selectors(spec.metric_names)  # a bad selector fails here, at start-up
        self._stats = stats
        self._on_skip = on_skip
        self._monotonic = monotonic
        self._wall_ns = wall_ns
        self._due = monotonic()
        self._woken = threading.Event()
        self._seen: dict[_SeriesKey, tuple[str, int | None]] = {}
        self._skips_seen: set[str] = set()
        self._last_logged = ""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy

    def read(self) -> list[MetricLog]:
        """New rows of one scrape if the interval is due, else nothing. Blocks at most `timeout`."""
        if self._monotonic() < self._due:
            return []
        return self.scrape()

    def flush(self) -> list[MetricLog]:
        """At the end: one last scrape, for values set since the previous one."""
        return self.scrape()

    def wait(self, timeout: float) -> None:
        remaining = self._due - self._monotonic()
        if remaining > 0:
            self._woken.wait(min(timeout, remaining))
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()

    def close(self) -> None:
        """Nothing to release: every scrape opens and closes its own connection."""

    def scrape(self) -> list[MetricLog]:
        """Scrape now and return the rows that are new (see the module docstring)."""
        self._due = self._monotonic() + self.interval
        started_ns = self._wall_ns()
        try:
            text = self._fetch()
        except _ScrapeFailed as exc:
            self._failed(exc)
            return []
        self.scrape_stats.count("ok")
        self._last_logged = ""
        return self._new_rows(text, rfc3339_from_ns(started_ns - started_ns % 1000))

    def _new_rows(self, text: str, scrape_time: str) -> list[MetricLog]:
        skips: list[Skipped] = []
        rows: list[MetricLog] = []
        for row_name, sample in select_samples(iter_samples(text, None, skips.append), self._selectors):
            key = (row_name, sample.name, sample.labels)
            row = to_metric_log(row_name, sample, scrape_time)
            state = (row.value, sample.timestamp_ns)
            if self._seen.get(key) != state:
                self._seen[key] = state
                rows.append(row)
        self._account(line_count(text), rows, skips)
        return rows

    def _account(self, lines: int, rows: list[MetricLog], skips: list[Skipped]) -> None:
        details = {skip.detail for skip in skips}
        new_skips = [skip for skip in skips if skip.detail not in self._skips_seen]
        self._skips_seen = details
        if self._stats is not None:
            self._stats.lines += lines
            self._stats.values.update(row.name for row in rows)
        for skip in new_skips:
            report_skip(skip, self._stats, self._on_skip)

    def _failed(self, exc: _ScrapeFailed) -> None:
        message = f"scraping {self.url} failed: {exc}"
        self.scrape_stats.count("refused" if exc.refused else "failed", message)
        if exc.refused:
            log.debug("%s (the training has not started serving yet, or has stopped)", message)
        elif message != self._last_logged:
            log.warning("%s; retrying every %gs", message, self.interval)
        self._last_logged = message

    def _fetch(self) -> str:
        request = urllib.request.Request(
            self.url, headers={"Accept": _ACCEPT, "User-Agent": "katib-metrics-collector"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read(MAX_BODY_BYTES + 1)
                encoding = response.headers.get("Content-Encoding", "")
                charset = response.headers.get_content_charset() or "utf-8"
        except urllib.error.HTTPError as exc:
            raise _ScrapeFailed(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            refused = isinstance(exc.reason, ConnectionRefusedError)
            raise _ScrapeFailed(str(exc.reason), refused=refused) from None
        except (OSError, HTTPException) as exc:  # timeouts, resets, malformed HTTP
            raise _ScrapeFailed(f"{type(exc).__name__}: {exc}") from None
        return _decode(body, encoding, charset)


def _decode(body: bytes, encoding: str, charset: str) -> str:
    if encoding == "gzip":
        body = gunzip_bounded(body, MAX_BODY_BYTES)
    if len(body) > MAX_BODY_BYTES:
        raise _ScrapeFailed(f"the exposition is larger than {MAX_BODY_BYTES} bytes")
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def gunzip_bounded(body: bytes, limit: int) -> bytes:
    """`body` decompressed, refused as soon as it grows past `limit` bytes (a gzip bomb never expands in
    memory: at most `limit` + one 64 KiB step is ever held). Concatenated gzip members are read as gzip does."""
    out: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(wbits=31)  # 16 + 15: a gzip header and trailer are required
            while data and not inflater.eof:
                piece = inflater.decompress(data, 65536)
                data = inflater.unconsumed_tail
                size += len(piece)
                if size > limit:
                    raise _ScrapeFailed(f"the gzip exposition expands to more than {limit} bytes")
                out.append(piece)
            if not inflater.eof:
                raise _ScrapeFailed("bad gzip body: the compressed stream ends early")
            data = inflater.unused_data.lstrip(b"\0")  # gzip tolerates zero padding between members
    except zlib.error as exc:
        raise _ScrapeFailed(f"bad gzip body: {exc}") from None
    return b"".join(out)


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host and a valid port; SpecError naming it and the fix otherwise."""
    example = f"expected http://HOST:PORT/PATH, e.g. {scrape_url()}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"invalid Prometheus URL {url!r}: {example}")
    try:
        parts.port  # noqa: B018 -- urllib checks the port only when asked
    except ValueError:
        raise SpecError(f"invalid Prometheus URL {url!r}: the port must be a number 1-65535; {example}") from None
    if parts.port == 0 or any(c.isspace() or ord(c) < 32 for c in url):
        raise SpecError(f"invalid Prometheus URL {url!r}: {example}")
    return url
