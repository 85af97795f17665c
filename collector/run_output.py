"""What `katib-metrics run` prints of its own: the retry notice, the summary table or JSON, the store line."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from typing import IO, Any, BinaryIO, TextIO

from katib_metrics.collector.report.observer import ReportOutcome
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.table import objective_line, summary_table, write_json_document

__all__ = ["LineEnd", "QuietText", "RetryNotice", "write_results"]

PROG = "katib-metrics run"


def output_lost(stream: IO[Any], error: OSError) -> None:
    """`stream` can take no more: its reader left (`katib-metrics run ... | head`) or its disk is full. From
    now on what is written to it goes nowhere, also to stderr when it is the same file (`2>&1`), and the run
    goes on collecting. Said once, on stderr if it still works."""
    fd = stream.fileno()
    broken = os.fstat(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for other in {fd, 1, 2}:
            with contextlib.suppress(OSError):
                same = os.fstat(other)
                if (same.st_dev, same.st_ino) == (broken.st_dev, broken.st_ino):
                    os.dup2(devnull, other)
    finally:
        os.close(devnull)
    with contextlib.suppress(OSError):
        why = "the reader of its output went away" if isinstance(error, BrokenPipeError) else "its output failed"
        print(f"{PROG}: warning: {why} ({error.strerror or error}): the rest is not shown; metrics are still "
              "collected and stored", file=sys.stderr, flush=True)


class LineEnd:
    """A binary stream that remembers whether what was written last ended a line (the table starts on its own).
    A reader that goes away does not stop the run (`output_lost`)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.at_line_start = True
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self._lock:
            if data:
                self.at_line_start = data.endswith(b"\n")
            return self._quietly(self.stream.write, data) or len(data)

    def flush(self) -> None:
        self._quietly(self.stream.flush)

    def end_line(self) -> None:
        """A newline if the command's last output left a line open."""
        with self._lock:
            if not self.at_line_start:
                self._quietly(self.stream.write, b"\n")
                self._quietly(self.stream.flush)
                self.at_line_start = True

    def _quietly(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as err:
            output_lost(self.stream, err)
            return None


class QuietText(io.TextIOBase):
    """`run`'s own text on stdout: a reader that goes away does not stop the run (`output_lost`)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as err:
            output_lost(self.stream, err)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as err:
            output_lost(self.stream, err)


class RetryNotice:
    """A `ReportObserver` that says once, on the first retry, where it is retrying and until when."""

    def __init__(self, where: str, budget: float, err: TextIO | None = None) -> None:
        self.where = where
        self.budget = budget
        self.until = time.time() + budget
        self.err = err or sys.stderr
        self.said = False

    def retrying(self, code: str, pause: float) -> None:
        if self.said:
            return
        self.said = True
        until = time.strftime("%H:%M:%S", time.localtime(self.until))
        print(f"{PROG}: {self.where} did not take the report ({code}); retrying until {until} "
              f"(--report-timeout {self.budget:g}s)", file=self.err, flush=True)

    def finished(self, outcome: ReportOutcome, seconds: float, rows: int) -> None:
        """Only the retry is news; the outcome is printed by `run` itself."""


def write_results(store: MetricStore, trial: str, output: str, out: TextIO,
                  diagnosis: list[dict[str, Any]] | None = None) -> None:
    """The summary table and which strategy chose the objective's value, or `parse --output json`'s document."""
    summaries = store.summaries()
    if output == "json":
        write_json_document(out, store.all_rows(), summaries, trial_name=trial, diagnosis=diagnosis or [])
        out.write("\n")
        return
    out.write(summary_table(summaries) + "\n")
    out.write(objective_line(summaries, store.spec.objective, store.spec.objective_type) + "\n")
