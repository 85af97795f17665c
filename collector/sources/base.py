"""The roles a source plays for the pipeline: non-blocking reads, a final flush, and a wait for news."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from katib_metrics.parsers.model import MetricLog

__all__ = ["BlockSource", "LogSource"]


class BlockSource(Protocol):
    """Bytes as they are written, handed over in blocks of whole lines (each ends with a newline).

    `read` never blocks and returns a bounded block (empty: no new complete line). Parsing whole
    blocks rather than single lines is what lets `parsers.stream.BlockParser` search at C speed.
    """

    def read(self) -> bytes: ...

    def flush(self) -> bytes:
        """At true end only: the unterminated last line (without a newline), if any."""
        ...

    def wait(self, timeout: float) -> None:
        """Block until something may have changed, `wake()` is called, or `timeout` seconds pass."""
        ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class LogSource(Protocol):
    """MetricLogs as they appear; the same contract as `BlockSource` one stage later."""

    def read(self) -> Sequence[MetricLog]:
        """New logs; empty only when nothing new is available (not merely nothing with a metric)."""
        ...

    def flush(self) -> Sequence[MetricLog]: ...

    def wait(self, timeout: float) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...
