"""`katib-metrics run` for push-mode training: a db-manager for the command, and its values in the run's table.

The command's environment names the trial (`KATIB_TRIAL_NAME`) and a db-manager (`KATIB_DB_MANAGER_ADDRESS`):
`--db-manager` when given, else an embedded one on loopback over the local store, so a script that calls
`katib_metrics.report_metrics` (or uses `MetricsReporter`) runs unchanged on a laptop. When the command has
ended, what it reported itself is read back from that db-manager (`GetObservationLog` from the run's start)
and counted in the run's summary, so an objective that was pushed rather than printed is not `unavailable`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from katib_metrics.collector.dbmanager import RunningServer, StoreError, default_db_path, serve
from katib_metrics.collector.push import ADDRESS_ENV, TRIAL_ENV
from katib_metrics.collector.report import QueryError, get_observation_log
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.timestamps import Instant, format_rfc3339

__all__ = ["PushedRows"]

log = logging.getLogger(__name__)


@dataclass
class PushedRows:
    """Where the command reports to, and how many values it reported (known after `finish`)."""

    trial: str
    address: str
    server: RunningServer | None = None  # the embedded db-manager, while the command runs
    count: int = field(default=0)
    timeout: float = 30.0  # for each read-back (bounded by the run's --report-timeout)
    started: float = field(default_factory=time.time)
    before: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # rows already in the window

    @classmethod
    def start(cls, trial: str, db_manager: str | None, db_path: Path | None, timeout: float = 30.0) -> PushedRows:
        """`--db-manager`, else an embedded db-manager on 127.0.0.1 over the local store (raises StoreError).

        Rows of an appended trial that already fall in the read-back window (the same second) are remembered, so
        they are not counted again as the command's own."""
        if db_manager:
            pushed = cls(trial, db_manager, timeout=timeout)
        else:
            if db_path is None:
                db_path = default_db_path()
                db_path.parent.mkdir(parents=True, exist_ok=True)
            server = serve("127.0.0.1:0", db_path)
            pushed = cls(trial, server.address, server, timeout=timeout)
        pushed.before = Counter(_keys(pushed._read(quiet=True)))
        return pushed

    @property
    def _start(self) -> str:
        """A second before the run started (Katib's SDK stamps whole seconds)."""
        return format_rfc3339(Instant(int(self.started) - 1, 0))

    def _read(self, quiet: bool = False) -> list[MetricLog]:
        """The trial's rows from `_start` on."""
        try:
            return get_observation_log(self.address, self.trial, start=self._start, timeout=self.timeout)
        except QueryError as err:
            if not quiet:
                log.warning("values the command reported itself cannot be read back for the table: %s", err)
            return []

    @property
    def env(self) -> dict[str, str]:
        return {TRIAL_ENV: self.trial, ADDRESS_ENV: self.address}

    def finish(self, store: MetricStore) -> int:
        """Count what the command reported since the run started in `store`'s summaries; stop the embedded server.

        The embedded db-manager's rows are read from its store a batch at a time (a command may push millions);
        another db-manager's through GetObservationLog, which answers with all of them at once."""
        before = self.before.copy()
        try:
            batches = self.server.store.batches(self.trial, start_time=self._start) if self.server else [self._read()]
            for batch in batches:
                rows = _new_rows(batch, before)
                store.add_reported(rows)
                self.count += len(rows)
        except StoreError as err:
            log.warning("values the command reported itself cannot be read back for the table: %s", err)
        finally:
            self.stop()
        return self.count

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=5)
            self.server = None


def _keys(rows: list[MetricLog]) -> list[tuple[str, str, str]]:
    return [(row.time_stamp, row.name, row.value) for row in rows]


def _new_rows(rows: list[MetricLog], before: Counter[tuple[str, str, str]]) -> list[MetricLog]:
    """`rows` without those already there when the run started (a multiset: a repeated row counts each time)."""
    new = []
    for row, key in zip(rows, _keys(rows), strict=True):
        if before[key] > 0:
            before[key] -= 1
        else:
            new.append(row)
    return new
