"""Sources: the first stage of the pipeline; they read files, event directories or endpoints incrementally.

A `LineSource` yields batches of complete lines (a file tail); a `LogSource` yields MetricLogs
directly (an event directory, a Prometheus scrape). Sources only do I/O: parsing belongs to `parsers`.
"""

from collector.sources.base import LineBatch, LineSource, LogSource
from collector.sources.tail import FileTail
from collector.sources.watch import DirWatcher

__all__ = ["DirWatcher", "FileTail", "LineBatch", "LineSource", "LogSource"]
