"""Push mode's delivery: one batch of rows into a db-manager exactly once, retried within a deadline.

A request that failed with DEADLINE_EXCEEDED, UNAVAILABLE or CANCELLED may still have been stored (the reply
was lost, or the connection broke, or the db-manager stopped, after the server read the request). Resending
blindly would store those rows twice; giving up would lose them. So before sending again, the batch is looked up with
`GetObservationLog` over its time range (stamps are unique per process, see `push_values.Stamper`) and
only the rows the db-manager does not hold are sent. RESOURCE_EXHAUSTED is a refusal: resent as is, except
for a request larger than the db-manager (or gRPC) accepts, which no retry can pass: its rows (one row, as
requests are cut at 3 MiB) are set aside in `Batch.refused` and the rest is delivered. Other codes fail at
once. Every attempt has its own deadline, never past the caller's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from katib_metrics.collector.report._generated import api_pb2
from katib_metrics.collector.report.client import MAX_BYTES_PER_REQUEST, MAX_ROWS_PER_REQUEST, open_channel
from katib_metrics.collector.report.retry import RETRYABLE_CODES, CallFailed, Clock, RetryPolicy, code_name
from katib_metrics.collector.report.wire import encode_requests
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.timestamps import parse_rfc3339

__all__ = ["ATTEMPT_TIMEOUT", "Batch", "PushChannel", "deliver"]

ATTEMPT_TIMEOUT = 20.0
"""One request's deadline: a db-manager that accepted the connection but hangs is tried again after this."""

_MIN_ATTEMPT = 0.05  # less time than this left would only buy another DEADLINE_EXCEEDED
# CANCELLED: push mode never cancels a call it is waiting on, so it comes from the server's side (a db-manager
# stopping mid-call answers UNAVAILABLE or CANCELLED, by a race), after the request may have been stored.
_MAYBE_STORED = frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED"})
_RETRYABLE = RETRYABLE_CODES | _MAYBE_STORED
_TOO_LARGE = "larger than max"  # gRPC's words, client and server side, C core and Go alike
_REPORT = "/api.v1.beta1.DBManager/ReportObservationLog"
_GET = "/api.v1.beta1.DBManager/GetObservationLog"


@dataclass
class Batch:
    """Rows to store together (at most 5,000), and whether an earlier attempt may have stored them."""

    rows: list[MetricLog]
    maybe_stored: bool = False
    attempts: int = 0
    last_code: str = ""
    last_details: str = ""
    refused: list[tuple[list[MetricLog], str]] = field(default_factory=list)  # rows never storable, and why


def _key(row: MetricLog) -> tuple[Any, str, str]:
    """What identifies a row whichever way the db-manager writes its time back (`.120000Z` or `.12Z`)."""
    return parse_rfc3339(row.time_stamp) or row.time_stamp, row.name, row.value


def _check_address(address: str) -> None:
    """Refuse what gRPC would only retry until the deadline: a URL, or a port it wraps (99999 dials 34463)."""
    scheme = address.partition("://")[0].lower() if "://" in address else ""
    if scheme in ("http", "https", "grpc", "grpcs"):
        raise ValueError(f"invalid gRPC address {address!r}: gRPC takes HOST:PORT, not a URL; "
                         f"use {address.partition('://')[2].rstrip('/')!r}")
    port = address.rpartition(":")[2]
    if port.isdigit() and int(port) > 65535:
        raise ValueError(f"invalid gRPC address {address!r}: port {port} is beyond 65535")


class PushChannel:
    """A channel to one db-manager and the two calls push mode makes on it."""

    def __init__(self, address: str) -> None:
        self.address = address
        _check_address(address)
        self._channel = open_channel(address)
        # Requests are written by `collector.report.wire` (bytes in), replies decoded by the generated classes.
        self._report: Any = self._channel.unary_unary(
            _REPORT, request_serializer=None, response_deserializer=api_pb2.ReportObservationLogReply.FromString)
        self._get: Any = self._channel.unary_unary(
            _GET, request_serializer=api_pb2.GetObservationLogRequest.SerializeToString,
            response_deserializer=api_pb2.GetObservationLogReply.FromString)

    def send(self, trial: str, batch: Batch, timeout: float) -> None:
        """Send the batch's rows; each request's rows leave the batch once acknowledged (never sent again)."""
        for request in encode_requests(trial, batch.rows, MAX_ROWS_PER_REQUEST, MAX_BYTES_PER_REQUEST):
            try:
                self._report(request.data, timeout=timeout)
            except grpc.RpcError as err:
                code, details = code_name(err)
                if code != "RESOURCE_EXHAUSTED" or _TOO_LARGE not in details.lower():
                    raise
                batch.refused.append((batch.rows[:request.rows], f"refused with {code}: {details}: a request of "
                                      f"{len(request.data):,} bytes, which no retry can pass"))
            batch.rows = batch.rows[request.rows:]

    def missing(self, trial: str, rows: Sequence[MetricLog], timeout: float) -> list[MetricLog]:
        """The rows the db-manager does not hold (looked up over their time range), in their order."""
        stamps = [(instant, row.time_stamp) for row in rows if (instant := parse_rfc3339(row.time_stamp))]
        if not rows or len(stamps) < len(rows):
            return list(rows)  # not stamped by push mode: cannot be looked up
        request = api_pb2.GetObservationLogRequest(
            trial_name=trial, start_time=min(stamps)[1], end_time=max(stamps)[1])
        reply = self._get(request, timeout=timeout)
        held = Counter(_key(MetricLog(m.time_stamp, m.metric.name, m.metric.value))
                       for m in reply.observation_log.metric_logs)
        left = []
        for row in rows:
            key = _key(row)
            if held[key] > 0:
                held[key] -= 1
            else:
                left.append(row)
        return left

    def close(self) -> None:
        self._channel.close()


def _attempt(channel: PushChannel, trial: str, batch: Batch, timeout: float) -> bool:
    """One step: look up a batch that may be stored, else send it. True when the db-manager holds it all."""
    if batch.maybe_stored:
        try:
            batch.rows = channel.missing(trial, batch.rows, timeout)
        except grpc.RpcError as err:
            if code_name(err)[0] in _RETRYABLE:
                raise
            # A db-manager that cannot be asked: resending is the lesser evil (a duplicate row changes
            # none of min, max and latest; a lost one can change all three).
        batch.maybe_stored = False
        return not batch.rows
    try:
        channel.send(trial, batch, timeout)
    except grpc.RpcError as err:
        batch.maybe_stored = code_name(err)[0] in _MAYBE_STORED
        raise
    return True


def deliver(channel: PushChannel, trial: str, batch: Batch, *, deadline: Callable[[], float],
            policy: RetryPolicy, clock: Clock, on_retry: Callable[[str, float], None] | None = None) -> None:
    """Until the db-manager holds every row of `batch` once; raises `CallFailed` on a refusal, or when
    `deadline()` (on `clock.now()`'s scale; it may move, e.g. when a reporter closes) has passed."""
    failures = 0
    while True:
        remaining = deadline() - clock.now()
        batch.attempts += 1
        try:
            if _attempt(channel, trial, batch, min(policy.call_timeout, max(remaining, _MIN_ATTEMPT))):
                return
            continue  # looked up: what is missing goes next, at once
        except grpc.RpcError as err:
            batch.last_code, batch.last_details = code_name(err)
            failures += 1
            if batch.last_code not in _RETRYABLE:
                raise CallFailed(batch.last_code, batch.last_details, attempts=batch.attempts, gave_up=False) from err
        left = deadline() - clock.now() - _MIN_ATTEMPT
        if left <= 0:
            raise CallFailed(batch.last_code, batch.last_details, attempts=batch.attempts, gave_up=True)
        pause = min(policy.backoff(failures, clock.random()), left)
        if on_retry is not None:
            on_retry(batch.last_code, pause)
        clock.sleep(pause)
