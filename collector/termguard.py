"""A SIGTERM that arrives while the sidecar's final report runs: say so at once, and end within the grace period.

Without it the final report keeps its whole budget (`--report-timeout`, 300 s by default) after the kubelet's
SIGTERM, and the kubelet's SIGKILL at the end of the pod's grace period ends the process with nothing logged.
With it: one line when the signal arrives, and if the report is still running `grace` seconds later, one line
naming what was not acknowledged and why, then the process exits with the report-failed status.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FinalReportGuard"]

log = logging.getLogger(__name__)


def _exit_now(status: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(status)  # the main thread is inside a gRPC call that a signal cannot interrupt


@dataclass
class FinalReportGuard:
    """Armed around the final report; `terminated` is set by the process's SIGTERM/SIGINT handler."""

    terminated: threading.Event
    grace: float
    status: int
    what: Callable[[], str]  # what is still unacknowledged, for the last line
    exit: Callable[[int], None] = _exit_now
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> FinalReportGuard:
        if not self.terminated.is_set():  # already terminated: the report's budget was cut to the grace period
            self._thread = threading.Thread(target=self._watch, name="final-report-guard", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.terminated.set()  # wakes the watcher, which sees the report done
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        self.terminated.wait()
        if self._done.is_set():
            return
        log.warning("terminated during the final report: %.0fs (--grace-period) left to finish it", self.grace)
        if self._done.wait(self.grace):
            return
        log.error("the final report did not finish within the grace period after SIGTERM; exiting: %s",
                  self.what())
        self.exit(self.status)
