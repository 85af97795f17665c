"""Push mode: `report_metrics`, a drop-in for `kubeflow.katib.report_metrics`, with stamps, deadlines and retries.

Same signature, defaults and exceptions as Katib's SDK: `ValueError` when `KATIB_TRIAL_NAME` is not set,
`RuntimeError` when the values are not numbers (as Katib's controller reads them) or cannot be stored.
The address is the argument, else `KATIB_DB_MANAGER_ADDRESS`, else Katib's default. Unlike Katib's, the
service account's namespace file is optional (it only names the trial in messages), so the same code runs
on a laptop under `katib-metrics run`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from katib_metrics.collector.push_send import ATTEMPT_TIMEOUT, Batch, PushChannel, deliver
from katib_metrics.collector.push_values import PushError, Stamper, metric_rows, names_of
from katib_metrics.collector.report.errors import hint_for
from katib_metrics.collector.report.retry import CallFailed, RetryPolicy, SystemClock

__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_DB_MANAGER_ADDRESS",
    "TRIAL_ENV",
    "PushError",
    "report_metrics",
    "resolve_address",
    "trial_from_env",
]

TRIAL_ENV = "KATIB_TRIAL_NAME"
ADDRESS_ENV = "KATIB_DB_MANAGER_ADDRESS"
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class _KatibDefault(str):
    """Katib's default address, told apart from the same text passed on purpose (then the argument wins)."""

    __slots__ = ()


DEFAULT_DB_MANAGER_ADDRESS: str = _KatibDefault("katib-db-manager.kubeflow:6789")

STAMPER = Stamper()
"""One per process: stamps of `report_metrics` and of every `MetricsReporter` never tie."""

POLICY = RetryPolicy(budget=1e9, call_timeout=ATTEMPT_TIMEOUT)  # the budget is each caller's deadline

_channels: dict[tuple[int, str], PushChannel] = {}
_channels_lock = threading.Lock()


def _after_fork() -> None:
    """In a forked child another thread may have held a lock (the parent's channels stay, keyed by its pid)."""
    global _channels_lock
    _channels_lock = threading.Lock()
    STAMPER.after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork)


def resolve_address(address: str) -> str:
    """The argument, unless it is the untouched default: then `KATIB_DB_MANAGER_ADDRESS`, else the default."""
    if address is DEFAULT_DB_MANAGER_ADDRESS:
        return os.environ.get(ADDRESS_ENV, "").strip() or str(address)
    return address


def trial_from_env() -> str:
    name = os.environ.get(TRIAL_ENV)
    if not name:
        # Katib's exact message; an empty name is refused too (it would only store rows nobody reads).
        raise ValueError("The Trial name is not passed to environment variables")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 in the environment: no request could carry it
        raise ValueError(f"{TRIAL_ENV}={name!r} is not UTF-8 text; set it to the Trial's name") from None
    return name


def trial_label(trial: str) -> str:
    """`namespace/trial` as Katib's messages name it, or the bare name off-cluster."""
    try:
        with open(_NAMESPACE_FILE, encoding="utf-8") as file:
            namespace = file.readline().strip()
    except OSError:
        namespace = ""
    return f"{namespace}/{trial}" if namespace else trial


def channel_for(address: str) -> PushChannel:
    """A channel per address, kept for the process (per pid: a gRPC channel does not survive fork)."""
    key = (os.getpid(), address)
    with _channels_lock:
        channel = _channels.get(key)
        if channel is None:
            channel = _channels[key] = PushChannel(address)
        return channel


def failure_message(trial: str, address: str, failed: CallFailed, *, rows: int, seconds: float | None) -> str:
    budget = f"for {seconds:g} s" if seconds is not None else ""
    tries = f" after {failed.attempts} attempts {budget}".rstrip() if failed.gave_up else ""
    details = f": {failed.details}" if failed.details else ""
    return (f"Unable to push metrics to Katib DB for Trial {trial_label(trial)}. Exception: the db-manager at "
            f"{address} answered {failed.code}{details}{tries}; {rows} rows not stored; {hint_for(failed.code)}")


def report_metrics(
    metrics: Mapping[str, Any],
    db_manager_address: str = DEFAULT_DB_MANAGER_ADDRESS,
    timeout: float | None = 120,
) -> None:
    """Store `metrics` (name → number) for the trial named by `KATIB_TRIAL_NAME`, stamped now (µs, UTC).

    Retries UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED for up to `timeout` seconds (None: until
    stored), each attempt with its own deadline; on return every value is stored exactly once. Raises
    `ValueError` without `KATIB_TRIAL_NAME`, `RuntimeError` (`PushError`) for a value that is not a number
    or when the db-manager did not store the values in time.
    """
    trial = trial_from_env()
    address = resolve_address(db_manager_address)
    try:
        rows = metric_rows(metrics, STAMPER.next())
    except PushError as err:
        raise PushError(f"Unable to push metrics to Katib DB for Trial {trial_label(trial)}. Exception: {err}") \
            from None
    clock = SystemClock()
    end = clock.now() + timeout if timeout is not None else float("inf")
    try:
        channel = channel_for(address)
    except ValueError as err:  # not HOST:PORT
        raise PushError(f"Unable to push metrics to Katib DB for Trial {trial_label(trial)}. Exception: {err}") \
            from None
    batch = Batch(rows)
    try:
        deliver(channel, trial, batch, deadline=lambda: end, policy=POLICY, clock=clock)
    except CallFailed as failed:
        left = len(batch.rows) + sum(len(refused) for refused, _ in batch.refused)
        raise PushError(failure_message(trial, address, failed, rows=left, seconds=timeout)) from failed
    if batch.refused:  # rows that no retry can store; the others are stored
        refused = [row for rows_, _ in batch.refused for row in rows_]
        raise PushError(f"Unable to push metrics to Katib DB for Trial {trial_label(trial)}. Exception: the "
                        f"db-manager at {address} {batch.refused[0][1]}; {len(refused)} rows not stored "
                        f"({names_of(refused)}), the other {len(rows) - len(refused)} stored; report shorter names")
