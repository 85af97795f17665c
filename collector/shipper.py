"""Incremental reporting: rows go to the db-manager while the training runs, so only the tail is left at exit.

    store ──take(≤5,000 rows)──▶ in-flight batch ──ReportObservationLog──▶ db-manager
           a background thread: whenever `threshold` rows are waiting, or every `interval` seconds
    finish(): stop the thread → final delivery (in-flight batch, the rest, the unavailable row)

A batch is taken out of the store only into the thread's hands and leaves them only once the
db-manager acknowledged it: a failed batch stays in flight and is sent again after a pause (nothing
lost), an acknowledged one is never sent again (nothing duplicated). A failure during the run is not
fatal: the final delivery retries it under the sidecar's `--report-timeout`, and only its failure
makes the sidecar exit non-zero. Katib's controller reads the observation log only after the job
ends, so early rows are harmless; its median-stop algorithm even benefits from them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from katib_metrics.collector.delivery import Delivery, deliver
from katib_metrics.collector.report import MAX_ROWS_PER_REQUEST, DBManagerReporter, ReportError
from katib_metrics.collector.report.observer import ReportObserver, ReportOutcome
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import MetricLog

__all__ = ["Shipper"]

log = logging.getLogger(__name__)

THRESHOLD = MAX_ROWS_PER_REQUEST
INTERVAL = 5.0
ATTEMPT_BUDGET = 5.0
MAX_PAUSE = 30.0


class _Deferred:
    """Forwards a run-time report's events; a failed one is a retry to come, not a failed report."""

    def __init__(self, observer: ReportObserver | None) -> None:
        self.observer = observer
        self.owed_retry = False

    def retrying(self, code: str, pause: float) -> None:
        if self.observer is not None:
            self.observer.retrying(code, pause)

    def finished(self, outcome: ReportOutcome, seconds: float, rows: int) -> None:
        if outcome is ReportOutcome.FAILED:
            self.owed_retry = True
            return
        if self.owed_retry:
            outcome, self.owed_retry = ReportOutcome.RETRIED, False
        if self.observer is not None:
            self.observer.finished(outcome, seconds, rows)


class Shipper:
    """Sends the store's rows in the background while collection runs; `finish()` sends the rest."""

    def __init__(
        self,
        store: MetricStore,
        trial: str,
        address: str,
        *,
        observer: ReportObserver | None = None,
        threshold: int = THRESHOLD,
        interval: float = INTERVAL,
        attempt_budget: float = ATTEMPT_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.trial = trial
        self.address = address
        self.observer = observer
        self.threshold = min(threshold, MAX_ROWS_PER_REQUEST)
        self.interval = interval
        self.attempt_budget = attempt_budget
        self.clock = clock
        self.shipped = 0  # rows acknowledged during the run
        self.requests = 0
        self.failures = 0  # run-time batches that failed (and were kept for a later attempt)
        self._inflight: list[MetricLog] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_problem = ""

    def start(self) -> Shipper:
        self.store.hold_back()  # rows that cannot be spilled wait in their file for us, not in memory
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        reporter = DBManagerReporter(self.address, report_timeout=self.attempt_budget,
                                     call_timeout=self.attempt_budget, observer=_Deferred(self.observer))
        try:
            self._loop(reporter)
        finally:
            reporter.close()

    def _loop(self, reporter: DBManagerReporter) -> None:
        due = self.clock() + self.interval
        while not self._stopping.is_set():
            self.store.wait_unreported(self.threshold, max(due - self.clock(), 0.0), self._stopping)
            if self._stopping.is_set():
                return
            if (not self._inflight and self.store.unreported < self.threshold and self.clock() < due
                    and self.store.stalled_since is None):  # reading waits for us: take now
                continue
            if self._ship(reporter):
                due = self.clock() + self.interval
            else:  # wait on the stop event, not the store: rows keep coming while the db-manager is down
                self._stopping.wait(self._pause())
                due = self.clock()

    def _pause(self) -> float:
        return min(MAX_PAUSE, self.attempt_budget * 2.0 ** min(self.failures - 1, 8))

    def _ship(self, reporter: DBManagerReporter) -> bool:
        """Send one batch (the in-flight one first); False when it failed and stays in flight."""
        if not self._inflight:
            self._inflight = self.store.take(MAX_ROWS_PER_REQUEST)
        if not self._inflight:
            return True
        try:
            result = reporter.report(self.trial, self._inflight, budget=self.attempt_budget)
        except ReportError as err:
            self._failed(err)
            return False
        self.shipped += result.rows
        self.requests += result.requests
        self._inflight = []
        self.failures = 0
        return True

    def _failed(self, err: ReportError) -> None:
        done = err.rows_acknowledged  # requests of this batch the db-manager stored are not sent again
        self.shipped += done
        self._inflight = self._inflight[done:]
        self.failures += 1
        if self.observer is not None:  # the batch will be sent again: a retry, not a failed report
            self.observer.retrying(err.code, self._pause())
        if err.code != self._last_problem:
            log.warning("reporting during the run failed, will retry (nothing is lost): %s", err)
            self._last_problem = err.code

    def stop(self, timeout: float | None = None) -> None:
        """Stop sending in the background; waits for a request under way (bounded by `attempt_budget`)."""
        self._stopping.set()
        self.store.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(self, budget: float) -> Delivery:
        """Stop the background sends, then deliver what is left; raises `ReportError` on a final failure.

        The `Delivery` counts every row and request of the trial, those sent during the run included.
        """
        started = self.clock()
        self.stop()
        remaining = max(budget - (self.clock() - started), 0.1)
        final = deliver(self.store, self.trial, self.address, budget=remaining, observer=self.observer,
                        pending=self._inflight, reported_before=self.shipped)
        self._inflight = []
        return Delivery(self.shipped + final.rows, self.requests + final.requests, final.retries,
                        self.clock() - started)
