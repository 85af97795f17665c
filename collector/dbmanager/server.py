"""The local db-manager's gRPC edge: Katib's `DBManager` and `grpc.health.v1.Health` over an ObservationStore.

Decodes requests, calls the store, encodes replies; all storage rules live in `store.py`.

    AddressError    a listen address that is not HOST:PORT (a usage error)
    BindError       the address is valid but cannot be listened on (in use, not local, no permission)

Status codes: a bad time stamp or time bound is INVALID_ARGUMENT (nothing of the request is stored);
a database busy beyond its timeout or failing to write is UNAVAILABLE and a full disk RESOURCE_EXHAUSTED
(nothing of the request is stored; clients retry); other storage failures are INTERNAL. A report whose
client stopped waiting before it could be written (its deadline passed on a locked database) is rolled back
and ends CANCELLED, so the client's resend is the only copy.
Health: service "" or "grpc.health.v1.Health" answers SERVING after a `SELECT 1`, else NOT_SERVING;
any other service name is NOT_FOUND, as the standard health protocol says (Katib answers UNKNOWN
with an error; both fail a probe).
"""

from __future__ import annotations

import errno
import logging
import socket
import sqlite3
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from katib_metrics.collector.dbmanager.store import Abandoned, InvalidTimestamp, ObservationStore, StoreError
from katib_metrics.collector.report._generated import api_pb2, api_pb2_grpc, health_pb2, health_pb2_grpc
from katib_metrics.collector.report.wire import encode_reply
from katib_metrics.parsers.model import MetricLog

__all__ = ["AddressError", "BindError", "RunningServer", "parse_listen", "serve"]

log = logging.getLogger(__name__)

HEALTH_SERVICE = "grpc.health.v1.Health"
_MAX_MESSAGE = 2**31 - 1  # as Katib's db-manager
_MAX_DETAILS = 500  # characters of an error answer (see `_short`)
# SQLite's primary result codes of failures that pass: the write was rolled back whole, so clients may retry
# (a full disk as RESOURCE_EXHAUSTED, as gRPC names "the file system is out of space"; a file-size limit
# or a failing write is reported as an I/O error).
_TRANSIENT = {
    5: grpc.StatusCode.UNAVAILABLE,  # SQLITE_BUSY
    6: grpc.StatusCode.UNAVAILABLE,  # SQLITE_LOCKED
    10: grpc.StatusCode.UNAVAILABLE,  # SQLITE_IOERR
    13: grpc.StatusCode.RESOURCE_EXHAUSTED,  # SQLITE_FULL
}
T = TypeVar("T")


class AddressError(ValueError):
    """A listen address that is not HOST:PORT."""


class BindError(OSError):
    """The server cannot listen on the address."""


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets; empty host = all interfaces) as gRPC's (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(
            f"invalid listen address {listen!r}: expected HOST:PORT with a port 0-65535, e.g. 127.0.0.1:6789"
        )
    return host or "0.0.0.0", int(port_text)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, _short(message))
    raise AssertionError("grpc's abort returned")  # abort always raises


def _short(message: str) -> str:
    """The message with its middle cut to `_MAX_DETAILS` characters. The details travel in a trailer, which
    gRPC clients refuse beyond 8-16 KiB (a non-ASCII character takes up to 12 bytes there); the client then
    sees RESOURCE_EXHAUSTED, which it retries, instead of the answer (a 100 KB bad time stamp, quoted)."""
    if len(message) <= _MAX_DETAILS:
        return message
    cut = len(message) - _MAX_DETAILS + 40
    keep = (_MAX_DETAILS - 40) // 2
    return f"{message[:keep]}...[{cut:,} characters cut]...{message[-keep:]}"


def _guarded(context: grpc.ServicerContext, action: Callable[[], T]) -> T:
    """Run a store action, turning its failures into the status codes of the module docstring."""
    try:
        return action()
    except Abandoned as err:  # the client has its answer already (DEADLINE_EXCEEDED or CANCELLED)
        log.debug("%s; nothing stored", err)
        _abort(context, grpc.StatusCode.CANCELLED, f"{err}; nothing of this request was stored")
    except InvalidTimestamp as err:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{err}; nothing of this request was stored")
    except sqlite3.OperationalError as err:
        code = _TRANSIENT.get(err.sqlite_errorcode & 0xFF, grpc.StatusCode.INTERNAL)
        log.warning("database busy or failing (%s): %s", code.name, err)
        advice = "; nothing of this request was stored, retry" if code != grpc.StatusCode.INTERNAL else ""
        _abort(context, code, f"database error: {err}{advice}")
    except (sqlite3.Error, StoreError) as err:
        log.error("database error: %s", err)
        _abort(context, grpc.StatusCode.INTERNAL, f"database error: {err}")


class DBManagerService(api_pb2_grpc.DBManagerServicer):
    """Katib's DBManager over an ObservationStore."""

    def __init__(self, store: ObservationStore) -> None:
        self.store = store

    def ReportObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        logs = [
            MetricLog(m.time_stamp, m.metric.name, m.metric.value)
            for m in request.observation_log.metric_logs
        ]
        stored = _guarded(context, lambda: self.store.report(request.trial_name, logs, context.is_active))
        log.debug("stored %d of %d rows for trial %r", stored, len(logs), request.trial_name)
        return api_pb2.ReportObservationLogReply()

    def GetObservationLog(self, request: Any, context: grpc.ServicerContext) -> bytes:
        """The reply's bytes, written from the rows directly (`report.wire.encode_reply`)."""
        rows = _guarded(
            context,
            lambda: self.store.query(
                request.trial_name, request.metric_name, request.start_time, request.end_time
            ),
        )
        return encode_reply(rows)

    def DeleteObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        deleted = _guarded(context, lambda: self.store.delete(request.trial_name))
        log.debug("deleted %d rows of trial %r", deleted, request.trial_name)
        return api_pb2.DeleteObservationLogReply()


def _add_dbmanager(service: DBManagerService, server: grpc.Server) -> None:
    """The generated registration, but GetObservationLog's reply goes out as the bytes the service wrote."""
    handlers = {
        "ReportObservationLog": grpc.unary_unary_rpc_method_handler(
            service.ReportObservationLog, request_deserializer=api_pb2.ReportObservationLogRequest.FromString,
            response_serializer=api_pb2.ReportObservationLogReply.SerializeToString),
        "GetObservationLog": grpc.unary_unary_rpc_method_handler(
            service.GetObservationLog, request_deserializer=api_pb2.GetObservationLogRequest.FromString,
            response_serializer=bytes),
        "DeleteObservationLog": grpc.unary_unary_rpc_method_handler(
            service.DeleteObservationLog, request_deserializer=api_pb2.DeleteObservationLogRequest.FromString,
            response_serializer=api_pb2.DeleteObservationLogReply.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("api.v1.beta1.DBManager", handlers),))


class HealthService(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health/Check, answered from the database's health."""

    def __init__(self, store: ObservationStore) -> None:
        self.store = store

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.service not in ("", HEALTH_SERVICE):
            _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"unknown service {request.service!r}: ask for '' or {HEALTH_SERVICE!r}",
            )
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.store.ping()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        return health_pb2.HealthCheckResponse(status=status)


@dataclass
class RunningServer:
    """A started db-manager: `port` is the bound port (useful with port 0)."""

    port: int
    host: str
    store: ObservationStore
    _server: Any

    @property
    def address(self) -> str:
        """HOST:PORT a client on this machine can dial."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = 5.0) -> None:
        """Finish in-flight calls for up to `grace` seconds, then close the database."""
        self._server.stop(grace).wait()
        self.store.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops or `timeout` passes; True if it stopped."""
        return bool(self._server.wait_for_termination(timeout))


def serve(listen: str, db_path: str | Path, *, max_workers: int = 8) -> RunningServer:
    """Open the database, bind `listen` (HOST:PORT, port 0 = any free port) and start serving."""
    host, port = parse_listen(listen)
    store = ObservationStore(db_path)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="db-manager"),
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.so_reuseport", 0),  # a second db-manager on the same port must fail, not share it
        ],
    )
    _add_dbmanager(DBManagerService(store), server)
    health_pb2_grpc.add_HealthServicer_to_server(HealthService(store), server)  # type: ignore[no-untyped-call]
    bound = 0 if _in_use(host, port) else _bind(server, host, port)
    if not bound:
        store.close()
        raise BindError(
            f"cannot listen on {listen}: the port is in use or the address is not local; "
            "stop the other process or choose another --listen"
        )
    server.start()
    log.debug("db-manager serving on %s:%d (database %s)", host, bound, store.path)
    return RunningServer(bound, host, store, server)


def _in_use(host: str, port: int) -> bool:
    """A port another process listens on, found before gRPC's C core tries it (and logs its own line)."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False  # gRPC will say what is wrong with the address
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(address)
            except OSError as err:
                return err.errno == errno.EADDRINUSE
    return False


def _bind(server: Any, host: str, port: int) -> int:
    target = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        return int(server.add_insecure_port(target))
    except RuntimeError:  # newer grpcio raises instead of returning 0
        return 0
