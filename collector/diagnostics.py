"""Why a metric ended unavailable, at the end of `run` and of the sidecar: the diagnosis, logged or printed.

The diagnosis itself is `parsers.diagnosis` (pure); this adapter keeps a bounded head of a command's
output (which cannot be read again) and hands the lines to a logger or a stream. A diagnosis that
fails cannot fail the trial: it is logged as such and the exit status is unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import IO, Protocol

from katib_metrics.parsers.diagnosis import DEFAULT_MAX_BYTES
from katib_metrics.parsers.diagnosis_report import Explanation, explain
from katib_metrics.parsers.errors import ParseError
from katib_metrics.parsers.model import CollectorSpec, MetricSummary

__all__ = ["OutputHead", "explain_safely", "log_diagnosis", "print_explanation"]


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class OutputHead:
    """The first `limit` bytes written through its tees (stdout and stderr of a command, interleaved)."""

    def __init__(self, limit: int = DEFAULT_MAX_BYTES) -> None:
        self.limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()

    def keep(self, data: bytes) -> None:
        with self._lock:
            room = self.limit + 1 - len(self._data)  # one byte more: the sample then knows it was cut
            if room > 0:
                self._data += data[:room]

    @property
    def data(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def tee(self, stream: Writable) -> _Tee:
        return _Tee(self, stream)


class _Tee:
    """Writes through to `stream`, keeping a copy of the head."""

    def __init__(self, head: OutputHead, stream: Writable) -> None:
        self.head, self.stream = head, stream

    def write(self, data: bytes) -> int:
        self.head.keep(data)
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


def explain_safely(
    spec: CollectorSpec, path: str, summaries: Sequence[MetricSummary], *, head: bytes | None = None,
    regex_timeout: float = 1.0,
) -> Explanation:
    """`parsers.diagnosis_report.explain`, but a failure to diagnose is one warning, never an exception."""
    try:
        return explain(spec, path, summaries, head=head, regex_timeout=regex_timeout)
    except (OSError, ParseError, ImportError) as err:  # the diagnosis is advice: never the reason a run fails
        return Explanation((f"no diagnosis: {err}",))


def print_explanation(why: Explanation, prog: str, out: IO[str]) -> None:
    for line in why.lines():
        print(f"{prog}: {line}", file=out)


def log_diagnosis(
    log: logging.Logger, spec: CollectorSpec, path: str, summaries: Sequence[MetricSummary], *,
    regex_timeout: float = 1.0,
) -> None:
    """Log each line at WARNING (the sidecar's log: what `kubectl logs … -c metrics-logger-and-collector` shows)."""
    for line in explain_safely(spec, path, summaries, regex_timeout=regex_timeout).lines():
        log.warning("%s", line)
