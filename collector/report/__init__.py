"""Reporting over Katib's gRPC API: db-manager and early-stopping clients, retry policy, errors."""

from collector.report.client import (
    MAX_ROWS_PER_REQUEST,
    DBManagerReporter,
    EarlyStoppingClient,
    delete_observation_log,
    get_observation_log,
)
from collector.report.errors import QueryError, ReportError, ServiceError, TrialStatusError
from collector.report.observer import ReportCounters, ReportObserver, ReportOutcome, ReportResult
from collector.report.retry import RETRYABLE_CODES, RetryPolicy

__all__ = [
    "MAX_ROWS_PER_REQUEST",
    "RETRYABLE_CODES",
    "DBManagerReporter",
    "EarlyStoppingClient",
    "QueryError",
    "ReportCounters",
    "ReportError",
    "ReportObserver",
    "ReportOutcome",
    "ReportResult",
    "RetryPolicy",
    "ServiceError",
    "TrialStatusError",
    "delete_observation_log",
    "get_observation_log",
]
