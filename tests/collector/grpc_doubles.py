"""Test doubles that are real gRPC servers: a recording DBManager with scripted faults, a fake clock."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc

# Decides the fate of the n-th call (1-based): None serves it, a code aborts it, "slow" delays it.
Script = Callable[[int], grpc.StatusCode | None]


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps; jitter fixed at the midpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.t += seconds

    def random(self) -> float:
        return 0.5


@dataclass
class Received:
    trial: str
    rows: list[tuple[str, str, str]]


@dataclass
class RecordingDBManager(api_pb2_grpc.DBManagerServicer):
    """Records every ReportObservationLog that it acknowledges; `script` injects failures per call."""

    script: Script = lambda n: None
    delay_calls: set[int] = field(default_factory=set)  # calls answered only after `delay` seconds
    store_before_delay: bool = False  # a delayed call is applied before the delay (the client times out)
    delay: float = 1.0
    calls: int = 0
    received: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def ReportObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            self.calls += 1
            n = self.calls
        code = self.script(n)
        if code is not None:
            context.abort(code, f"scripted {code.name} for call {n}")
        rows = [(m.time_stamp, m.metric.name, m.metric.value) for m in request.observation_log.metric_logs]
        if n in self.delay_calls:
            if self.store_before_delay:
                self._record(request.trial_name, rows)
            threading.Event().wait(self.delay)  # a slow server, not a test waiting on a thread
            return api_pb2.ReportObservationLogReply()
        self._record(request.trial_name, rows)
        return api_pb2.ReportObservationLogReply()

    def _record(self, trial: str, rows: list[tuple[str, str, str]]) -> None:
        with self._cond:
            self.received.append(Received(trial, rows))
            self._cond.notify_all()

    def all_rows(self) -> list[tuple[str, str, str]]:
        with self._cond:
            return [row for request in self.received for row in request.rows]


@dataclass
class RecordingEarlyStopping(api_pb2_grpc.EarlyStoppingServicer):
    script: Script = lambda n: None
    calls: int = 0
    trials: list[str] = field(default_factory=list)

    def SetTrialStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        code = self.script(self.calls)
        if code is not None:
            context.abort(code, f"scripted {code.name}")
        self.trials.append(request.trial_name)
        return api_pb2.SetTrialStatusReply()


def start_server(*servicers: Any, port: int = 0) -> tuple[grpc.Server, str]:
    """A real gRPC server on 127.0.0.1 with the given servicers; returns it and its HOST:PORT."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    for servicer in servicers:
        if isinstance(servicer, api_pb2_grpc.DBManagerServicer):
            api_pb2_grpc.add_DBManagerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        if isinstance(servicer, api_pb2_grpc.EarlyStoppingServicer):
            api_pb2_grpc.add_EarlyStoppingServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, f"127.0.0.1:{bound}"


def free_port() -> int:
    """A port that was free a moment ago (for tests that start a server later on purpose)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
