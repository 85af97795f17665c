"""`katib-metrics run` for push-mode training: a db-manager for the command, and its values in the run's table.

The command's environment names the trial (`KATIB_TRIAL_NAME`) and a db-manager (`KATIB_DB_MANAGER_ADDRESS`):
`--db-manager` when given, else an embedded one on loopback over the local store, so a script that calls
`katib_metrics.report_metrics` (or uses `MetricsReporter`) runs unchanged on a laptop. When the command has
ended, what it reported itself is read back from that db-manager (`GetObservationLog` from the run's start)
and counted in the run's summary, so an objective that was pushed rather than printed is not `unavailable`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from katib_metrics.collector.dbmanager import RunningServer, default_db_path, serve
from katib_metrics.collector.push import ADDRESS_ENV, TRIAL_ENV
from katib_metrics.collector.report import QueryError, get_observation_log
from katib_metrics.collector.store import MetricStore
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

    @classmethod
    def start(cls, trial: str, db_manager: str | None, db_path: Path | None) -> PushedRows:
        """`--db-manager`, else an embedded db-manager on 127.0.0.1 over the local store (raises StoreError)."""
        if db_manager:
            return cls(trial, db_manager)
        if db_path is None:
            db_path = default_db_path()
            db_path.parent.mkdir(parents=True, exist_ok=True)
        server = serve("127.0.0.1:0", db_path)
        return cls(trial, server.address, server)

    @property
    def env(self) -> dict[str, str]:
        return {TRIAL_ENV: self.trial, ADDRESS_ENV: self.address}

    def finish(self, store: MetricStore, started: float) -> int:
        """Count what the command reported since `started` in `store`'s summaries; stop the embedded server.

        Katib's SDK stamps whole seconds, so the look-up starts a second early."""
        try:
            rows = get_observation_log(self.address, self.trial, start=format_rfc3339(Instant(int(started) - 1, 0)),
                                       timeout=30.0)
        except QueryError as err:
            log.warning("values the command reported itself cannot be read back for the table: %s", err)
            rows = []
        finally:
            self.stop()
        store.add_reported(rows)
        self.count = len(rows)
        return self.count

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=5)
            self.server = None
