"""The local db-manager: Katib's DBManager gRPC API over SQLite, for running without a cluster."""

from katib_metrics.collector.dbmanager.server import AddressError, BindError, RunningServer, serve
from katib_metrics.collector.dbmanager.store import (
    InvalidTimestamp,
    ObservationStore,
    StoreError,
    StoreOpenError,
    TrialInfo,
    default_db_path,
    resolve_db_path,
)

__all__ = [
    "AddressError",
    "BindError",
    "InvalidTimestamp",
    "ObservationStore",
    "RunningServer",
    "StoreError",
    "StoreOpenError",
    "TrialInfo",
    "default_db_path",
    "resolve_db_path",
    "serve",
]
