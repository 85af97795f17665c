"""`MetricsReporter`: push mode for training loops. `report()` queues and returns; a thread stores in the background.

Values are checked and stamped when `report()` is called, sent in requests of at most 5,000 rows, retried
through db-manager outages for as long as the process runs, and flushed by `close()`: at the end of a
`with` block, or at interpreter exit. Nothing is dropped silently: a value that could not be stored by
then is named on stderr (how many rows, which metrics, why). A full queue (`max_queued_rows`, 100,000 values:
about 25 MiB) makes `report()` wait, up to `timeout`, and then raise, rather than grow without bound.
In a child forked after the reporter was made (no background thread there), `report()` stores at once, as
`report_metrics` does, and `flush()` and `close()` leave the parent's queue to the parent.
SIGTERM (early stopping, a pod being deleted) ends a process without its exit handlers: when the program has
no SIGTERM handler of its own, the first reporter installs one that closes every reporter for up to
`TERM_FLUSH` seconds, then ends the process by the signal, as the default action would have.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from types import FrameType, TracebackType
from typing import Any

from katib_metrics.collector.push import (
    DEFAULT_DB_MANAGER_ADDRESS,
    POLICY,
    STAMPER,
    report_metrics,
    resolve_address,
    trial_from_env,
    trial_label,
)
from katib_metrics.collector.push_send import Batch, PushChannel, deliver
from katib_metrics.collector.push_values import PushError, metric_rows, names_of
from katib_metrics.collector.report.client import MAX_ROWS_PER_REQUEST
from katib_metrics.collector.report.errors import hint_for
from katib_metrics.collector.report.retry import CallFailed
from katib_metrics.parsers.model import MetricLog

__all__ = ["MetricsReporter"]

log = logging.getLogger("katib_metrics.push")


class _Clock:
    """The clock `deliver` runs on for a reporter: its pauses end early when `close()` moves the deadline."""

    def __init__(self, reporter: MetricsReporter) -> None:
        self._reporter = reporter

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        reporter, end = self._reporter, time.monotonic() + seconds
        with reporter.changed:
            while (left := min(end, reporter.deadline - 0.05) - time.monotonic()) > 0:
                reporter.changed.wait(left)

    def random(self) -> float:
        return random.random()


class MetricsReporter:
    """Reports metrics for the trial named by `KATIB_TRIAL_NAME` without blocking the caller.

    `timeout`: how long `report()` may wait when the queue is full. `exit_timeout`: how long `close()`
    (and interpreter exit) waits for the queue to drain before naming what is left on stderr.
    """

    def __init__(self, db_manager_address: str = DEFAULT_DB_MANAGER_ADDRESS, *, timeout: float = 120.0,
                 exit_timeout: float = 120.0, max_queued_rows: int = 100_000,
                 batch_rows: int = MAX_ROWS_PER_REQUEST) -> None:
        if not 1 <= batch_rows <= MAX_ROWS_PER_REQUEST:
            raise ValueError(f"batch_rows must be between 1 and {MAX_ROWS_PER_REQUEST}, got {batch_rows}")
        self.trial = trial_from_env()
        self.address = resolve_address(db_manager_address)
        self.timeout, self.exit_timeout = timeout, exit_timeout
        self.max_queued_rows, self.batch_rows = max(max_queued_rows, batch_rows), batch_rows
        self._channel = PushChannel(self.address)
        self.changed = threading.Condition()  # guards everything below; signalled on every change
        self._queue: deque[MetricLog] = deque()
        self._batch: Batch | None = None  # being delivered
        self._refused: list[tuple[list[MetricLog], str]] = []  # rows the db-manager refused, and why
        self._gave_up: CallFailed | None = None
        self._unsure = False  # the rows given up on may have been stored (their last answer was lost)
        self._cut = False  # close() cut the call in flight by closing the channel
        self.deadline = math.inf  # of deliveries, on time.monotonic(); set when closing
        self._closing = self._closed = self._outage = False
        self.stored = 0  # values the db-manager acknowledged
        self.retries = 0  # failed attempts that were retried
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="katib-metrics-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        _open.add(self)
        _watch_sigterm()

    def report(self, metrics: Mapping[str, Any]) -> None:
        """Queue `metrics` (name → number), stamped now; raises `PushError` (a RuntimeError) for a bad value."""
        if os.getpid() != self._pid:  # a forked child: queued here, they would die with it unsent
            report_metrics(metrics, self.address, self.timeout)
            return
        try:
            rows = metric_rows(metrics, STAMPER.next())
        except PushError as err:
            raise PushError(f"Unable to push metrics to Katib DB for Trial {trial_label(self.trial)}. "
                            f"Exception: {err}") from None
        with self.changed:
            if self._closing:
                raise PushError(f"this MetricsReporter for trial {self.trial} is closed: create a new one")
            if not self._room(len(rows)) and not self.changed.wait_for(
                    lambda: self._room(len(rows)) or self._closing, self.timeout):
                raise PushError(f"Unable to push metrics to Katib DB for Trial {trial_label(self.trial)}. Exception: "
                                f"{len(self._queue)} values are still waiting for the db-manager at {self.address} "
                                f"after {self.timeout:g} s; {hint_for('UNAVAILABLE')}")
            if self._closing:
                raise PushError(f"this MetricsReporter for trial {self.trial} closed while report() waited")
            self._queue.extend(rows)
            self.changed.notify_all()

    def _room(self, rows: int) -> bool:
        # A report of more values than the queue holds is taken once the queue is empty, else never.
        return not self._queue or len(self._queue) + rows <= self.max_queued_rows

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every value queued so far is stored (True), or `timeout` passes or some were refused."""
        if os.getpid() != self._pid:
            return True  # what a forked child reported is stored already (or raised)
        with self.changed:
            self.changed.wait_for(lambda: self._idle() or not self._thread.is_alive(), timeout)
            return self._idle() and not self._refused

    def _idle(self) -> bool:
        return not self._queue and self._batch is None

    # the background thread

    def _run(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                count = min(len(self._queue), self.batch_rows)
                batch = self._batch = Batch([self._queue.popleft() for _ in range(count)])
            failed: CallFailed | None = None
            try:
                deliver(self._channel, self.trial, batch, deadline=lambda: self.deadline, policy=POLICY,
                        clock=_Clock(self), on_retry=self._retrying)
            except CallFailed as err:
                failed = err
            except Exception as err:  # a bug must not lose the batch without a word
                failed = self._failure(batch, err)
            if not self._delivered(batch, count, failed):
                return

    def _failure(self, batch: Batch, err: Exception) -> CallFailed:
        with self.changed:  # once close() has cut the channel, calls fail: that is giving up, not a refusal
            if self._cut:
                return CallFailed(batch.last_code or "CANCELLED", batch.last_details or "cut when closing",
                                  attempts=batch.attempts, gave_up=True)
        return CallFailed("INTERNAL", f"{type(err).__name__}: {err}", attempts=batch.attempts, gave_up=False)

    def _delivered(self, batch: Batch, count: int, failed: CallFailed | None) -> bool:
        """Book a delivery's outcome; False when the worker must stop (the closing deadline passed)."""
        with self.changed:
            self._batch = None
            for rows, why in batch.refused:
                log.error("katib_metrics: the db-manager at %s refused %d values of trial %s: %s",
                          self.address, len(rows), self.trial, why)
            self._refused += batch.refused
            self.stored += count - len(batch.rows) - sum(len(rows) for rows, _ in batch.refused)
            if failed is not None and failed.gave_up:
                self._queue.extendleft(reversed(batch.rows))
                self._gave_up, self._unsure = failed, batch.maybe_stored
            elif failed is not None:
                log.error("katib_metrics: the db-manager at %s refused %d values of trial %s: %s: %s",
                          self.address, len(batch.rows), self.trial, failed.code, failed.details)
                self._refused.append((batch.rows, f"refused with {failed.code}: {failed.details}"))
            elif self._outage:
                self._outage = False
                log.warning("katib_metrics: the db-manager at %s stores values again", self.address)
            self.changed.notify_all()
            return failed is None or not failed.gave_up

    def _retrying(self, code: str, pause: float) -> None:
        with self.changed:
            self.retries += 1
            self.changed.notify_all()
        if not self._outage:
            self._outage = True
            log.warning("katib_metrics: the db-manager at %s did not store values of trial %s (%s); %d queued, "
                        "retrying in the background", self.address, self.trial, code, len(self._queue))

    # the end

    def close(self, timeout: float | None = None) -> int:
        """Flush for up to `timeout` (default `exit_timeout`) seconds, stop, and name on stderr what could not
        be stored. Returns how many values were not stored. Called again, it does nothing."""
        if os.getpid() != self._pid:
            return 0  # a forked child (its exit runs the parent's atexit too): the queue is the parent's
        with self.changed:
            if self._closed:
                return 0
            self._closed = self._closing = True
            wait = self.exit_timeout if timeout is None else timeout
            self.deadline = time.monotonic() + wait
            self.changed.notify_all()
        self._thread.join(wait + 0.2)  # an attempt begun after this never outlasts the deadline by more
        if self._thread.is_alive():  # one begun before has its own deadline (up to 20 s): cut it
            with self.changed:
                self._cut = True
            self._channel.close()
            self._thread.join(5.0)
        atexit.unregister(self.close)
        with self.changed:
            left = list(self._queue) + (self._batch.rows if self._batch is not None else [])
            unsure = self._unsure or bool(self._batch is not None and self._batch.attempts)
            lost = [(left, self._why(wait, unsure))] if left else []
            lost += self._refused
        self._channel.close()
        for rows, why in lost:
            self._tell(rows, why)
        return sum(len(rows) for rows, _ in lost)

    def _why(self, waited: float, unsure: bool) -> str:
        failed = self._gave_up
        cause = f" (last answer {failed.code}: {failed.details}; {hint_for(failed.code)})" if failed else ""
        maybe = "; the last request may have been stored" if unsure else ""
        return f"not stored within {waited:g} s of closing{cause}{maybe}"

    def _tell(self, rows: list[MetricLog], why: str) -> None:
        print(f"katib_metrics: {len(rows)} metric values of trial {self.trial} ({names_of(rows)}) were NOT reported "
              f"to the db-manager at {self.address}: {why}", file=sys.stderr or sys.__stderr__, flush=True)

    def __enter__(self) -> MetricsReporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


TERM_FLUSH = 3.0  # seconds a SIGTERM leaves queued values to be stored (Katib's run grace is 10 s, a pod's 30 s)
_open: weakref.WeakSet[MetricsReporter] = weakref.WeakSet()


def _watch_sigterm() -> None:
    """Installs `_close_then_terminate` for SIGTERM unless the program handles it itself (or cannot: only the
    main thread may set handlers)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _close_then_terminate)


def _close_then_terminate(signum: int, frame: FrameType | None) -> None:
    for reporter in list(_open):
        reporter.close(TERM_FLUSH)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
