"""The pipeline: sources → parser → store, in one thread; the only module that knows every stage.

A `BlockSource` is turned into a `LogSource` by `ParsedLines`: each block of whole lines is parsed
with one `BlockParser.parse_block` call (C-speed searches over the whole block), the read time as
the default timestamp (DESIGN difference 5's live rule). `Pipeline` then moves logs into the
`MetricStore` as they appear: while lines keep coming, one read per `SETTLE`; when the source is
idle, a sleep on its wait (inotify) until something changes. On `stop()` it drains the source to its
true end, unterminated last line included, before returning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from katib_metrics.collector.sources.base import BlockSource, LogSource
from katib_metrics.collector.sources.tail import WatchedTail
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricLog
from katib_metrics.parsers.stats import ParseStats, SkipSink
from katib_metrics.parsers.stream import BlockParser
from katib_metrics.parsers.timestamps import unix_to_rfc3339

if TYPE_CHECKING:
    from katib_metrics.parsers.lines import LineParser

__all__ = ["ParsedLines", "Pipeline", "open_source"]

log = logging.getLogger(__name__)

IDLE_WAIT = 1.0
SETTLE = 0.1
"""While lines keep coming, read at most once per this many seconds (counted from the start of the last
read): a writer flushing every few milliseconds is read in a few large blocks a second instead of
hundreds of small ones, the file watch is not consulted at all meanwhile, and a value still reaches
the store and /metrics within about this long (the /metrics target is 250 ms at the 99th percentile)."""


class ParsedLines:
    """A `LogSource` over a `BlockSource`: each block parsed once, lines without a time get the read time."""

    def __init__(self, lines: BlockSource, parser: LineParser, *, clock: Callable[[], float] = time.time,
                 echo: Callable[[bytes], None] | None = None) -> None:
        self.lines = lines
        self.parser = parser
        self.blocks = BlockParser(parser)  # counts `parser.stats.lines` and numbers lines across blocks
        self.clock = clock
        self.echo = echo
        # A source of several streams (a command's stdout and stderr) tags each block with its stream: a long
        # line handed over in pieces continues in the next block *of its stream*.
        self._streams: dict[int, BlockParser] = {0: self.blocks}

    def _parse(self, block: bytes) -> list[MetricLog]:
        if not block:
            return []
        if self.echo is not None:
            self.echo(block)
        stream = getattr(self.lines, "stream", 0)
        blocks = self._streams.get(stream) or self._streams.setdefault(stream, BlockParser(self.parser))
        return blocks.parse_block(block, unix_to_rfc3339(self.clock()), more=True)

    def read(self) -> list[MetricLog]:
        """The logs of the next lines that hold any; empty only when no new line is complete."""
        while block := self.lines.read():
            if logs := self._parse(block):
                return logs
        return []

    def flush(self) -> list[MetricLog]:
        """At true end: the rest, the unterminated last line of each stream included."""
        logs: list[MetricLog] = []
        while block := self.lines.read():
            logs += self._parse(block)
        logs += self._parse(self.lines.flush())
        for blocks in self._streams.values():
            logs += blocks.finish()
        return logs

    def wait(self, timeout: float) -> None:
        self.lines.wait(timeout)

    def wake(self) -> None:
        self.lines.wake()

    def close(self) -> None:
        self.lines.close()


class Pipeline:
    """Moves MetricLogs from a source into the store until stopped, then drains to the true end."""

    def __init__(self, source: LogSource, store: MetricStore, *, idle_wait: float = IDLE_WAIT,
                 settle: float = SETTLE, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.store = store
        self.idle_wait = idle_wait
        self.settle = settle
        self.clock = clock
        self.error: BaseException | None = None
        self.batches = 0
        self._stopping = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last_problem = ""

    def start(self) -> Pipeline:
        self._thread = threading.Thread(target=self._run_guarded, name="pipeline", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Ask for the final drain and wait for it; False if it did not finish within `timeout`."""
        self._stopping.set()
        self.source.wake()
        if self._thread is None:
            self.run()
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_for(self, predicate: Callable[[MetricStore], bool], timeout: float) -> bool:
        """Block until `predicate(store)` holds after a batch (for tests and benchmarks), or `timeout`."""
        with self._progress:
            return self._progress.wait_for(lambda: predicate(self.store), timeout)

    def _run_guarded(self) -> None:
        try:
            self.run()
        except Exception as err:  # policy: the rows collected so far are still reported by the caller
            self.error = err
            log.exception("%s", self.problem)

    @property
    def problem(self) -> str:
        """What stopped collection early, and which metrics it may have cut short; empty if nothing did."""
        if self.error is None:
            return ""
        reason = f"{type(self.error).__name__}: {self.error}" if str(self.error) else type(self.error).__name__
        names = ", ".join(self.store.spec.metric_names) or "every metric"
        return (f"collection stopped early ({reason}); reporting what was collected, "
                f"which may be incomplete for: {names}")

    def run(self) -> None:
        while not self._stopping.is_set():
            started = self.clock()
            if self._drain():  # busy: a fixed cadence, whatever the reading took
                self._stopping.wait(max(self.settle - (self.clock() - started), 0.0))
            else:
                self.source.wait(self.idle_wait)
        self._drain()
        self._add(self._guarded(self.source.flush))
        # A file tail's flush checks the whole file once more; one that finds it changed reads it again
        # from the start: drained here, in bounded reads (any other source has nothing left after flush).
        self._drain()

    def _drain(self) -> bool:
        moved = False
        while batch := self._guarded(self.source.read):
            self._add(batch)
            moved = True
        with self._progress:  # lines without metrics are progress too (stats.lines moved)
            self._progress.notify_all()
        return moved

    def _guarded(self, read: Callable[[], Sequence[MetricLog]]) -> Sequence[MetricLog]:
        try:
            return read()
        except OSError as err:  # policy: unreadable now (permissions, a vanished mount) may heal; retry later
            problem = str(err)
            if problem != self._last_problem:
                log.warning("cannot read the metrics source: %s; retrying", problem)
                self._last_problem = problem
            return []

    def _add(self, logs: Sequence[MetricLog]) -> None:
        self.store.add(logs)
        with self._progress:
            self.batches += 1
            self._progress.notify_all()


def open_source(
    spec: CollectorSpec,
    *,
    path: Path | None,
    stats: ParseStats,
    on_skip: SkipSink | None = None,
    prometheus_url: str | None = None,
    regex_timeout: float = 1.0,
    scrape_interval: float = 1.0,
    echo: Callable[[bytes], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> LogSource:
    """The source and parser for `spec.format`: a file tail + line parser, an event dir, or a scrape."""
    if spec.format is FileFormat.PROMETHEUS:
        from katib_metrics.collector.sources.prometheus import PrometheusSource

        return PrometheusSource(spec, prometheus_url, interval=scrape_interval, stats=stats, on_skip=on_skip)
    if path is None:
        raise ValueError(f"a {spec.format} source needs a path")
    if spec.format is FileFormat.TFEVENT:
        from katib_metrics.collector.sources.eventdir import EventDirSource

        return EventDirSource(path, spec, stats=stats, on_skip=on_skip)
    parser = make_line_parser(spec, regex_timeout=regex_timeout, stats=stats, on_skip=on_skip)
    return ParsedLines(WatchedTail(path), parser, clock=clock, echo=echo)
