"""Delivering the store to the db-manager: every row, in ≤5,000-row requests, within one time budget.

The reporting client (`collector.report`) retries one `report()` call until its budget runs out; the
store may hold more rows than fit in memory, so this module feeds it one chunk at a time and keeps
the whole delivery inside a single budget and a single outcome (`reports_total` counts whole
reports, not chunks). This is the final delivery; `collector.shipper` sends rows during the run and
hands its unacknowledged batch (`pending`) to it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from katib_metrics.collector.report import MAX_ROWS_PER_REQUEST, DBManagerReporter, ReportError
from katib_metrics.collector.report.observer import ReportObserver, ReportOutcome
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import MetricLog

__all__ = ["Delivery", "deliver"]


@dataclass(frozen=True, slots=True)
class Delivery:
    rows: int
    requests: int
    retries: int
    seconds: float


class _Whole:
    """Forwards retries as they happen and one `finished` for the whole delivery."""

    def __init__(self, observer: ReportObserver | None) -> None:
        self.observer = observer
        self.retried = False

    def retrying(self, code: str, pause: float) -> None:
        self.retried = True
        if self.observer is not None:
            self.observer.retrying(code, pause)

    def finished(self, outcome: ReportOutcome, seconds: float, rows: int) -> None:
        """Per chunk: ignored; `close()` reports the whole."""

    def close(self, failed: bool, seconds: float, rows: int) -> None:
        outcome = (ReportOutcome.FAILED if failed else ReportOutcome.RETRIED if self.retried
                   else ReportOutcome.SUCCESS)
        if self.observer is not None:
            self.observer.finished(outcome, seconds, rows)


def deliver(
    store: MetricStore,
    trial: str,
    address: str,
    *,
    budget: float,
    observer: ReportObserver | None = None,
    chunk_rows: int = MAX_ROWS_PER_REQUEST,
    clock: Callable[[], float] = time.monotonic,
    pending: Sequence[MetricLog] = (),
    reported_before: int = 0,
) -> Delivery:
    """Report `pending`, then everything left in `store`, under `trial`; raises `ReportError`.

    `reported_before` counts rows an incremental reporter already stored: the error then says how
    many of all the trial's rows are stored.
    """
    started = clock()
    whole = _Whole(observer)
    rows = requests = retries = 0
    reporter = DBManagerReporter(address, report_timeout=budget, observer=whole)
    first = [list(pending)] if pending else []
    try:
        for chunk in itertools.chain(first, store.chunks(chunk_rows)):
            remaining = max(budget - (clock() - started), 0.001)
            try:
                result = reporter.report(trial, chunk, budget=remaining)
            except ReportError as err:
                whole.close(True, clock() - started, rows + err.rows_acknowledged)
                raise _overall(err, reported_before + rows, store.total_rows()) from err
            rows, requests, retries = rows + result.rows, requests + result.requests, retries + result.retries
    finally:
        reporter.close()
    whole.close(False, clock() - started, rows)
    return Delivery(rows, requests, retries, clock() - started)


def _overall(err: ReportError, rows_before: int, total: int) -> ReportError:
    """The chunk's error restated for the whole delivery (rows stored of all rows)."""
    return ReportError(err.address, err.code, err.details, trial=err.trial, gave_up=err.gave_up,
                       attempts=err.attempts, rows_acknowledged=rows_before + err.rows_acknowledged,
                       rows_total=total)
