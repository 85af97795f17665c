"""The sidecar's life: collect while the training runs, wait for it as Katib does, then report once.

    settings → source/parser/store (pipeline thread) + /metrics
             → rows reported during the run (shipper thread: whenever 5,000 are waiting, or every 5 s)
             → wait for the training (lifecycle) ── SIGTERM: wake, grace period starts
             → final drain → deliver the rest to the db-manager → exit status

Exit status (DESIGN "Sidecar exit"): 0 once the report is acknowledged, whatever the training did
(a failed training still reports what was collected); 1 when reporting failed, with the reason;
2 when `/metrics` cannot be served at the address asked for.
"""

from __future__ import annotations

import logging
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from katib_metrics.collector.diagnostics import log_diagnosis
from katib_metrics.collector.exposition import CollectorMetrics, MetricsServerError, serve_metrics
from katib_metrics.collector.lifecycle import (
    Outcome,
    ProcessTable,
    WaitResult,
    Waker,
    output_evidence,
    wait_for_training,
)
from katib_metrics.collector.pipeline import Pipeline, open_source
from katib_metrics.collector.report import ReportError
from katib_metrics.collector.settings import Settings
from katib_metrics.collector.shipper import Shipper
from katib_metrics.collector.stopper import early_stop_for
from katib_metrics.collector.store import MetricStore
from katib_metrics.collector.termguard import FinalReportGuard
from katib_metrics.parsers.model import FileFormat
from katib_metrics.parsers.stats import ParseStats, Skipped

__all__ = ["EXIT_OK", "EXIT_REPORT_FAILED", "EXIT_USAGE", "SkipLog", "run_sidecar"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REPORT_FAILED = 1
EXIT_USAGE = 2


@dataclass
class SkipLog:
    """Logs the first `limit` skipped lines/values with their line numbers; the rest are only counted."""

    limit: int = 20
    logged: int = 0
    suppressed: int = field(default=0)

    def __call__(self, skip: Skipped) -> None:
        if self.logged < self.limit:
            self.logged += 1
            log.warning("skipped line %d (%s): %s", skip.where, skip.reason, skip.detail)
        else:
            self.suppressed += 1


def _echo_block(block: bytes) -> None:
    sys.stdout.buffer.write(block if block.endswith(b"\n") else block + b"\n")
    sys.stdout.buffer.flush()


def _log_outcome(result: WaitResult) -> None:
    if result.outcome in (Outcome.COMPLETED, Outcome.ENDED, Outcome.EARLY_STOPPED):
        log.info("%s", result.detail)
    elif result.outcome is Outcome.INTERRUPTED:
        log.info("terminated (%s): final collection and report", result.detail)
    else:
        log.warning("%s; reporting what was collected", result.detail)


class Drains(Protocol):
    def stop(self, timeout: float | None = None) -> bool: ...


def final_read(pipeline: Drains, grace_ends: float | None, terminated: threading.Event, grace: float,
               clock: Callable[[], float], stalled: Callable[[], bool] = lambda: False) -> tuple[bool, float | None]:
    """The final drain: unbounded while nobody asks us to stop and the reporter takes rows when reading waits
    for it (`stalled()` says it has not for too long), then bounded by the grace period.

    Returns whether it finished, and when the grace period ends (None: no SIGTERM so far)."""
    while grace_ends is None:
        if pipeline.stop(timeout=0.5):
            return True, None
        if stalled():
            return False, None
        if terminated.is_set():
            grace_ends = clock() + grace
            log.warning("terminated during the final read: %.0fs (--grace-period) left to read and report", grace)
    return pipeline.stop(timeout=max(grace_ends - clock(), 0.0)), grace_ends


@dataclass
class Sidecar:
    settings: Settings
    waker: Waker
    table: ProcessTable | None = None
    clock: Callable[[], float] = time.monotonic
    terminated: threading.Event = field(default_factory=threading.Event)  # set by the SIGTERM handler

    def __post_init__(self) -> None:
        s = self.settings
        self.stats = ParseStats()
        self.skips = SkipLog()
        self.store = MetricStore(s.spec, stats=self.stats, events=s.kind is FileFormat.TFEVENT,
                                 spill_dir=s.spill_dir)
        self.metrics = CollectorMetrics(s.trial_name, s.spec.objective_type, self.store)
        self.early = early_stop_for(s) if s.stop_rules else None

    def run(self) -> int:
        s = self.settings
        try:
            server = serve_metrics(s.metrics_port, s.metrics_address or "0.0.0.0",
                                   registry=self.metrics.registry)
        except MetricsServerError as err:
            log.error("%s", err)
            return EXIT_USAGE
        source = open_source(s.spec, path=s.path, stats=self.stats, on_skip=self.skips,
                             prometheus_url=s.prometheus_url, regex_timeout=s.regex_timeout,
                             scrape_interval=s.poll_interval, echo=_echo_block if s.echo else None)
        source = self.early.watch(source) if self.early is not None else source
        pipeline = Pipeline(source, self.store).start()
        shipper = Shipper(self.store, s.trial_name, s.db_manager, observer=self.metrics).start()
        try:
            result = wait_for_training(s.marker_dir, poll_interval=s.poll_interval, timeout=s.timeout,
                                       wait_all=s.wait_all, waker=self.waker, table=self.table,
                                       mesh_proxies=s.mesh_proxies, clock=self.clock,
                                       evidence=output_evidence(s.path))
            _log_outcome(result)
            return self._finish(pipeline, shipper, result)
        finally:
            shipper.stop()
            source.close()
            self.store.close()
            if server is not None:
                server.close()

    def _finish(self, pipeline: Pipeline, shipper: Shipper, result: WaitResult) -> int:
        s = self.settings
        grace_ends = self.clock() + s.grace_period if result.outcome is Outcome.INTERRUPTED else None
        began = time.monotonic()  # a stall counts from here: a reporter stuck during the run gets its full time
        read, grace_ends = final_read(pipeline, grace_ends, self.terminated, s.grace_period, self.clock,
                                      lambda: self._stalled(began))
        if not read and grace_ends is None:
            log.warning("the final read waits for the reporter (no room to spill rows), which took none for %.0fs "
                        "(--report-timeout); reporting what was read", s.report_timeout)
        elif not read:
            log.warning("the final read did not finish within the grace period; reporting what was read")
        if self.skips.suppressed:
            log.warning("%d more skipped lines/values were not logged", self.skips.suppressed)
        budget = s.report_timeout if grace_ends is None else min(s.report_timeout,
                                                                  max(grace_ends - self.clock(), 0.1))
        guard = FinalReportGuard(self.terminated, s.grace_period, EXIT_REPORT_FAILED, lambda: self._unsent(shipper))
        try:
            with guard:
                done = shipper.finish(budget)
        except ReportError as err:
            log.error("%s", err)
            self._diagnose()
            return EXIT_REPORT_FAILED
        log.info("Metrics reported: %d rows for trial %s in %d request(s), %.3fs", done.rows, s.trial_name,
                 done.requests, done.seconds)
        late = self.store.row_count - (self.store.cut if self.store.cut is not None else self.store.row_count)
        if late > 0:  # the final read overran the grace period and went on while the report was sent
            log.warning("%d rows read after the final report began were not reported; these metrics may be "
                        "incomplete: %s", late, ", ".join(s.spec.metric_names) or "every metric")
        self._diagnose()
        if self.early is not None:  # the final report precedes SetTrialStatus (Katib's order)
            return self.early.conclude(s.trial_name, s.earlystop, budget=s.report_timeout)
        return EXIT_OK


    def _stalled(self, began: float) -> bool:
        since = self.store.stalled_since  # monotonic, whatever `clock` the sidecar was given
        return since is not None and time.monotonic() - max(since, began) > self.settings.report_timeout

    def _unsent(self, shipper: Shipper) -> str:
        s = self.settings
        return (f"{max(self.store.row_count - shipper.shipped, 0)} rows of trial {s.trial_name} "
                f"({', '.join(s.spec.metric_names) or 'every metric'}) not acknowledged by the db-manager at "
                f"{s.db_manager}")

    def _diagnose(self) -> None:
        """After the report, which must not wait for advice: why a metric is unavailable, in the pod's log."""
        s = self.settings
        if s.path is not None and _endless(s.path):
            log.info("no diagnosis: %s is not a regular file or directory (it cannot be read again)", s.path)
            return
        log_diagnosis(log, s.spec, str(s.path or ""), self.store.summaries(), regex_timeout=s.regex_timeout)


def _endless(path: Path) -> bool:
    """A FIFO or device: the diagnosis's blocking re-read would wait for a writer, or read forever."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def run_sidecar(settings: Settings, waker: Waker, *, table: ProcessTable | None = None,
                terminated: threading.Event | None = None) -> int:
    """Collect, wait, report; returns the exit status. `terminated`: set by the SIGTERM handler."""
    for warning in settings.warnings:
        log.warning("%s", warning)
    sidecar = Sidecar(settings, waker, table)
    if terminated is not None:
        sidecar.terminated = terminated
    return sidecar.run()
