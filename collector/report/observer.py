"""What the reporting client tells the outside about itself: reports by outcome, retries, durations.

The sidecar's `/metrics` implements `ReportObserver` (or reads a `ReportCounters`) to expose
`katib_collector_reports_total{outcome}` and the report duration; tests wait on the same counters.
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ReportCounters", "ReportObserver", "ReportOutcome", "ReportResult"]


class ReportOutcome(enum.StrEnum):
    """How a whole report ended; used as the `outcome` label value."""

    SUCCESS = "success"  # every request acknowledged at the first attempt
    RETRIED = "retried"  # every request acknowledged, after at least one retry
    FAILED = "failed"  # gave up or refused: some rows were not stored


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What one `report()` did: rows stored, requests sent, attempts made, time taken."""

    rows: int
    requests: int
    attempts: int
    seconds: float

    @property
    def retries(self) -> int:
        return self.attempts - self.requests

    @property
    def outcome(self) -> ReportOutcome:
        return ReportOutcome.RETRIED if self.retries else ReportOutcome.SUCCESS


class ReportObserver(Protocol):
    """Receives the reporting client's events; implementations must be quick and must not raise."""

    def retrying(self, code: str, pause: float) -> None:
        """An attempt failed with the retryable gRPC `code`; the next starts in `pause` seconds."""

    def finished(self, outcome: ReportOutcome, seconds: float, rows: int) -> None:
        """A whole report ended; `rows` is how many were acknowledged."""


class ReportCounters:
    """A thread-safe `ReportObserver` that counts; `snapshot()` and `wait_for()` read it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.outcomes: Counter[ReportOutcome] = Counter()
        self.retries: Counter[str] = Counter()
        self.rows = 0
        self.seconds = 0.0

    def retrying(self, code: str, pause: float) -> None:
        with self._cond:
            self.retries[code] += 1
            self._cond.notify_all()

    def finished(self, outcome: ReportOutcome, seconds: float, rows: int) -> None:
        with self._cond:
            self.outcomes[outcome] += 1
            self.rows += rows
            self.seconds += seconds
            self._cond.notify_all()

    def total_retries(self) -> int:
        with self._cond:
            return sum(self.retries.values())

    def wait_for(self, predicate: Callable[[ReportCounters], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds or `timeout` seconds pass; returns whether it held."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)
