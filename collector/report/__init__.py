"""Reporting over Katib's gRPC API: db-manager and early-stopping clients, retry policy, errors."""

from katib_metrics.collector.report.client import (
    MAX_ROWS_PER_REQUEST,
    DBManagerReporter,
    EarlyStoppingClient,
    delete_observation_log,
    get_observation_log,
)
from katib_metrics.collector.report.errors import QueryError, ReportError, ServiceError, TrialStatusError
from katib_metrics.collector.report.observer import ReportCounters, ReportObserver, ReportOutcome, ReportResult
from katib_metrics.collector.report.retry import RETRYABLE_CODES, RetryPolicy

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
