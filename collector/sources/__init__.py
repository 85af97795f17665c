"""Sources: the first stage of the pipeline; they read files, event directories or endpoints incrementally.

A `BlockSource` yields blocks of whole lines as bytes (a file tail, a command's output); a `LogSource`
yields MetricLogs directly (an event directory, a Prometheus scrape). Sources only do I/O: parsing
belongs to `parsers`.
"""

from katib_metrics.collector.sources.base import BlockSource, LogSource
from katib_metrics.collector.sources.tail import FileTail
from katib_metrics.collector.sources.watch import DirWatcher

__all__ = ["BlockSource", "DirWatcher", "FileTail", "LogSource"]
