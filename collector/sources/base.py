"""The roles a source plays for the pipeline: non-blocking reads, a final flush, and a wait for news."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from parsers.model import MetricLog

__all__ = ["LineBatch", "LineSource", "LogSource"]


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Complete lines in file order, without newlines; `first` is the 1-based number of `lines[0]`."""

    first: int
    lines: list[str]

    def __bool__(self) -> bool:
        return bool(self.lines)


class LineSource(Protocol):
    """Lines as they are written. `read` never blocks and returns a bounded batch (empty: nothing new)."""

    def read(self) -> LineBatch: ...

    def flush(self) -> LineBatch:
        """At true end only: the unterminated last line, if any."""
        ...

    def wait(self, timeout: float) -> None:
        """Block until something may have changed, `wake()` is called, or `timeout` seconds pass."""
        ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class LogSource(Protocol):
    """MetricLogs as they appear; the same contract as `LineSource` one stage later."""

    def read(self) -> list[MetricLog]:
        """New logs; empty only when nothing new is available (not merely nothing with a metric)."""
        ...

    def flush(self) -> list[MetricLog]: ...

    def wait(self, timeout: float) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...
