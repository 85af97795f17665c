"""The reporting client: sends observation logs to a db-manager and tells early stopping, over gRPC.

Last stage of the sidecar's and `run`'s pipeline. Takes and returns `parsers.model.MetricLog`;
protobuf messages never leave this package.

Delivery: a log is sent in requests of at most `chunk_size` rows (and a few MiB), one after the
other. A request the server acknowledged is never sent again, so nothing is duplicated by a retry
of a *later* request. A request that ended with DEADLINE_EXCEEDED may nevertheless have been
stored by the server; it is resent (at-least-once), because losing rows is worse than storing a
row twice: an identical duplicate row changes none of min, max or latest in Katib's trial status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc
from katib_metrics.collector.report.errors import QueryError, ReportError, TrialStatusError
from katib_metrics.collector.report.observer import ReportObserver, ReportOutcome, ReportResult
from katib_metrics.collector.report.retry import CallFailed, Clock, RetryPolicy, SystemClock, call_with_retry
from katib_metrics.collector.report.wire import encode_requests
from katib_metrics.parsers.model import MetricLog

__all__ = [
    "DBManagerReporter",
    "EarlyStoppingClient",
    "delete_observation_log",
    "get_observation_log",
    "open_channel",
]

MAX_ROWS_PER_REQUEST = 5000
"""Katib's MySQL insert fails beyond about 16,000 rows; 5,000 keeps well clear of it."""

MAX_BYTES_PER_REQUEST = 3 * 1024 * 1024
"""gRPC's default receive limit is 4 MiB; stay under it whatever the server's setting."""

_REPORT_METHOD = "/api.v1.beta1.DBManager/ReportObservationLog"
_MAX_MESSAGE = 2**31 - 1  # Katib's db-manager accepts messages this large; so do we

T = TypeVar("T")


def open_channel(address: str) -> grpc.Channel:
    """An insecure channel (Katib's services have no TLS) that reconnects quickly after an outage."""
    if not address or address != address.strip():
        raise ValueError(
            f"invalid gRPC address {address!r}: expected HOST:PORT, e.g. katib-db-manager.kubeflow:6789"
        )
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            # gRPC's own reconnect backoff grows to 120 s; ours must decide when to try again.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )


def _from_proto(olog: api_pb2.ObservationLog) -> list[MetricLog]:
    return [MetricLog(m.time_stamp, m.metric.name, m.metric.value) for m in olog.metric_logs]


def _require_trial(trial_name: str) -> None:
    if not trial_name:
        raise ValueError("the trial name is empty: pass the trial's name (Katib's -t flag)")


class DBManagerReporter:
    """Reports observation logs to Katib's `DBManager` service at `address` (HOST:PORT).

    `report_timeout` is the total retry budget of one `report()` call; `call_timeout` the deadline
    of each request. Not thread-safe: use one reporter per thread, or serialise the calls.
    """

    def __init__(
        self,
        address: str,
        *,
        report_timeout: float = 300.0,
        call_timeout: float = 30.0,
        chunk_size: int = MAX_ROWS_PER_REQUEST,
        max_chunk_bytes: int = MAX_BYTES_PER_REQUEST,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        observer: ReportObserver | None = None,
    ) -> None:
        if not 1 <= chunk_size <= MAX_ROWS_PER_REQUEST:
            raise ValueError(f"chunk_size must be between 1 and {MAX_ROWS_PER_REQUEST}, got {chunk_size}")
        self.address = address
        self.policy = policy or RetryPolicy(budget=report_timeout, call_timeout=call_timeout)
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes
        self._clock = clock or SystemClock()
        self._observer = observer
        self._channel = open_channel(address)
        self._stub: Any = api_pb2_grpc.DBManagerStub(self._channel)  # type: ignore[no-untyped-call]
        # Requests are encoded by `collector.report.wire` (bytes in, no serializer); replies decoded as usual.
        self._report_bytes: Any = self._channel.unary_unary(
            _REPORT_METHOD, request_serializer=None,
            response_deserializer=api_pb2.ReportObservationLogReply.FromString,
        )

    def report(
        self, trial_name: str, logs: Sequence[MetricLog], *, budget: float | None = None
    ) -> ReportResult:
        """Store `logs` under `trial_name`; raises `ReportError` when some rows could not be stored.

        An empty `logs` sends nothing (Katib's own db-manager fails on an empty insert). `budget`
        overrides the retry budget for this call, e.g. what is left of a budget shared by several calls.
        """
        _require_trial(trial_name)
        started = self._clock.now()
        deadline = started + (self.policy.budget if budget is None else budget)
        rows = requests = attempts = 0
        for request in encode_requests(trial_name, logs, self.chunk_size, self.max_chunk_bytes):
            try:
                tries = self._send(request.data, deadline)
            except CallFailed as failed:
                self._finished(ReportOutcome.FAILED, started, rows)
                raise ReportError(
                    self.address,
                    failed.code,
                    failed.details,
                    trial=trial_name,
                    gave_up=failed.gave_up,
                    attempts=attempts + failed.attempts,
                    rows_acknowledged=rows,
                    rows_total=len(logs),
                ) from failed
            rows, requests, attempts = rows + request.rows, requests + 1, attempts + tries
        result = ReportResult(rows, requests, attempts, self._clock.now() - started)
        self._finished(result.outcome, started, rows)
        return result

    def _send(self, request: bytes, deadline: float) -> int:
        """One encoded request, retried until acknowledged; returns the attempts it took."""

        def attempt(timeout: float) -> None:
            self._report_bytes(request, timeout=timeout)

        _, tries = call_with_retry(
            attempt, policy=self.policy, deadline=deadline, clock=self._clock, on_retry=self._retrying
        )
        return tries

    def _retrying(self, code: str, pause: float) -> None:
        if self._observer is not None:
            self._observer.retrying(code, pause)

    def _finished(self, outcome: ReportOutcome, started: float, rows: int) -> None:
        if self._observer is not None:
            self._observer.finished(outcome, self._clock.now() - started, rows)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DBManagerReporter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EarlyStoppingClient:
    """Tells a suggestion's `EarlyStopping` service (Katib's `-s-earlystop` HOST:PORT) a trial stopped."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 60.0,
        call_timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.address = address
        self.policy = policy or RetryPolicy(budget=timeout, call_timeout=call_timeout)
        self._clock = clock or SystemClock()
        self._channel = open_channel(address)
        self._stub: Any = api_pb2_grpc.EarlyStoppingStub(self._channel)  # type: ignore[no-untyped-call]

    def set_trial_status(self, trial_name: str) -> int:
        """Call SetTrialStatus; returns the attempts it took, raises `TrialStatusError` on failure."""
        _require_trial(trial_name)
        request = api_pb2.SetTrialStatusRequest(trial_name=trial_name)
        try:
            _, attempts = call_with_retry(
                lambda timeout: self._stub.SetTrialStatus(request, timeout=timeout),
                policy=self.policy,
                deadline=self._clock.now() + self.policy.budget,
                clock=self._clock,
            )
        except CallFailed as failed:
            raise TrialStatusError(
                f"marking trial {trial_name!r} early-stopped at the early-stopping service",
                self.address,
                failed.code,
                failed.details,
                gave_up=failed.gave_up,
                attempts=failed.attempts,
            ) from failed
        return attempts

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> EarlyStoppingClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def get_observation_log(
    address: str,
    trial: str,
    metric: str | None = None,
    start: str | None = None,
    end: str | None = None,
    *,
    timeout: float = 30.0,
    clock: Clock | None = None,
) -> list[MetricLog]:
    """A trial's rows as the db-manager returns them (filters as Katib's: exact name, inclusive times)."""
    _require_trial(trial)
    request = api_pb2.GetObservationLogRequest(
        trial_name=trial, metric_name=metric or "", start_time=start or "", end_time=end or ""
    )
    what = f"reading the observation log of trial {trial!r} from the db-manager"
    reply: api_pb2.GetObservationLogReply = _query(
        address, what, lambda stub, t: stub.GetObservationLog(request, timeout=t), timeout, clock
    )
    return _from_proto(reply.observation_log)


def delete_observation_log(
    address: str, trial: str, *, timeout: float = 30.0, clock: Clock | None = None
) -> None:
    """Remove every row of `trial` from the db-manager."""
    _require_trial(trial)
    request = api_pb2.DeleteObservationLogRequest(trial_name=trial)
    what = f"deleting the observation log of trial {trial!r} from the db-manager"
    _query(address, what, lambda stub, t: stub.DeleteObservationLog(request, timeout=t), timeout, clock)


def _query(
    address: str, what: str, call: Callable[[Any, float], T], timeout: float, clock: Clock | None
) -> T:
    clock = clock or SystemClock()
    policy = RetryPolicy(budget=timeout, call_timeout=timeout)
    with open_channel(address) as channel:
        stub = api_pb2_grpc.DBManagerStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply, _ = call_with_retry(
                lambda t: call(stub, t),
                policy=policy,
                deadline=clock.now() + timeout,
                clock=clock,
            )
        except CallFailed as failed:
            raise QueryError(
                what, address, failed.code, failed.details, gave_up=failed.gave_up, attempts=failed.attempts
            ) from failed
    return reply
