"""The HTTPS webhook: `/mutate-pod` (AdmissionReview v1), `/healthz`, `/readyz`, `/metrics`; decode, call, encode.

A thread per connection, bounded with deadlines and a body budget (`injector.connections`), HTTP/1.1 keep-alive
(`injector.httpwire`), TLS 1.2+ from a `CertificateReloader` (each new connection gets the current certificate,
so a rotated Secret is served without a restart). The same app
answers on the plain-HTTP metrics listener, except `/mutate-pod`.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from katib_metrics.injector.admission import AdmissionHandler, Answer
from katib_metrics.injector.certs import CertificateReloader
from katib_metrics.injector.connections import ConnectionTable, Limits, Reaper, Slot, SlotReader
from katib_metrics.injector.httpwire import HttpError, Request, read_request, response_bytes
from katib_metrics.injector.metrics import InjectorMetrics
from katib_metrics.injector.review import InvalidReview, denied, invalid

__all__ = ["MAX_BODY", "Limits", "WebhookApp", "WebhookServer", "start_in_thread"]

log = logging.getLogger(__name__)
# The largest AdmissionReview the webhook reads. The API server takes request bodies up to 3 MiB and etcd
# stores objects up to 1.5 MiB (protobuf), so no pod that can exist yields a much larger review. Measured
# (tests/injector/test_limits.py): a Trial pod's review with 20 env vars is 2 KiB; a pod at the 256 KiB
# annotation limit with 2,000 env vars is 449 KiB, a ninth of the cap.
MAX_BODY = 4 * 1024 * 1024
WEBHOOK_PATH = "/mutate-pod"


class WebhookApp:
    """Routes requests; counts and times every admission."""

    def __init__(self, handler: AdmissionHandler, metrics: InjectorMetrics,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.handler = handler
        self.metrics = metrics
        self.clock = clock
        self.ready = threading.Event()

    def admit(self, body: bytes) -> Answer:
        start = self.clock()
        try:
            answer = self.handler.handle(body)
        except Exception:  # the policy: never leave the API server without an answer
            log.exception("admission failed unexpectedly")
            answer = Answer(denied("", "internal error in the Katib metrics-collector injector", 500), "denied")
        self.metrics.observe(answer.outcome, self.clock() - start)
        return answer

    def refuse(self, message: str) -> Answer:
        """A webhook call whose HTTP request was unreadable: answered `invalid`, and counted."""
        answer = Answer(invalid(InvalidReview(message)), "invalid")
        self.metrics.observe(answer.outcome, 0.0)
        return answer


TEXT = "text/plain; charset=utf-8"
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class WebhookServer(socketserver.TCPServer):
    """A thread per connection, within `Limits` (`injector.connections`); TLS when given a reloader."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WebhookApp, reloader: CertificateReloader | None,
                 webhook: bool = True, limits: Limits | None = None) -> None:
        self.app = app
        self.reloader = reloader
        self.webhook = webhook
        self.table = ConnectionTable(limits or Limits())
        self._reaper = Reaper(self.table, f"webhook-reaper-{address[1]}")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, socketserver.BaseRequestHandler)
        self._reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        slot = self.table.admit(request)
        if slot is None:  # every connection is answering a request: the new one waits for none of them
            log.warning("refused a connection from %s: all %d connections are busy", client_address,
                        self.table.limits.max_connections)
            self.shutdown_request(request)
            return
        try:
            threading.Thread(target=self._connection, args=(request, client_address, slot), daemon=True,
                             name=f"webhook-conn-{slot.order}").start()
        except RuntimeError:  # no thread could be started: the connection is dropped, not the server
            log.warning("refused a connection from %s: cannot start a thread", client_address)
            self.table.release(slot)
            self.shutdown_request(request)

    def _connection(self, sock: socket.socket, client_address: Any, slot: Slot) -> None:
        limits = self.table.limits
        try:
            # A backstop only: the reaper closes a connection at its request or idle deadline.
            sock.settimeout(max(limits.request_timeout, limits.idle_timeout) + 5)
            self._serve(sock, slot)
        except OSError:  # resets, TLS failures, and connections we closed ourselves
            log.debug("connection from %s ended (%s)", client_address, slot.dropped or "error", exc_info=True)
        finally:
            self.table.release(slot)
            self.shutdown_request(sock)

    def _serve(self, sock: socket.socket, slot: Slot) -> None:
        """Requests answered in order until the client closes the connection or asks to, or it is dropped."""
        table, send = self.table, sock.sendall
        rfile = io.BufferedReader(SlotReader(sock, table, slot), 16384)

        def take(size: int) -> None:
            if not table.take(slot, size):
                raise HttpError(503, "the webhook holds as many request bodies as it may; retry")

        while True:
            try:
                request = read_request(rfile, send, MAX_BODY, take)
            except HttpError as err:
                if not slot.dropped:
                    table.writing(slot)
                    send(self.refuse(err))
                return
            if request is None or slot.dropped:  # a request cut short by its deadline is not answered
                return
            close = not request.keep_alive
            table.busy(slot)
            response = self.respond(request, close)
            table.writing(slot)
            send(response)
            if close:
                return
            table.idle(slot)

    def refuse(self, error: HttpError) -> bytes:
        """The answer to an unreadable request, then the connection closes. A webhook call still gets an
        AdmissionReview, so the API server shows the reason instead of a failed call."""
        if error.method == "POST" and error.path == WEBHOOK_PATH and self.webhook:
            answer = self.app.refuse(f"the request could not be read (HTTP {error.status}): {error}")
            return response_bytes(200, json.dumps(answer.review).encode(), "application/json", close=True)
        return response_bytes(error.status, f"{error}\n".encode(), TEXT, close=True)

    def respond(self, request: Request, close: bool) -> bytes:
        """The whole response to `request`: routes, health, metrics and the webhook."""
        app, path = self.app, request.path
        if request.method == "POST" and path == WEBHOOK_PATH and self.webhook:
            answer = app.admit(request.body)
            return response_bytes(200, json.dumps(answer.review).encode(), "application/json", close=close)
        if request.method == "POST":
            message = f"no such path {path}; the webhook is POST {WEBHOOK_PATH} on the TLS port\n"
            return response_bytes(404, message.encode(), TEXT, close=close)
        if request.method not in ("GET", "HEAD"):
            return response_bytes(405, f"method {request.method} not allowed\n".encode(), TEXT, close=close,
                                  extra=(("Allow", "GET, HEAD, POST"),))
        status, body, content_type = self._get(path)
        response = response_bytes(status, body, content_type, close=close)
        return response[:len(response) - len(body)] if request.method == "HEAD" else response

    def _get(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            return 200, b"ok\n", TEXT
        if path == "/readyz":
            ready = self.app.ready.is_set()
            return (200, b"ok\n", TEXT) if ready else (503, b"not ready\n", TEXT)
        if path == "/metrics":
            return 200, self.app.metrics.exposition(), _METRICS_TYPE
        return 404, f"no such path {path}\n".encode(), TEXT

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.reloader is None:
            return sock, address
        # The handshake happens in the connection's own thread, so a slow client cannot stall accept().
        return self.reloader.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def server_close(self) -> None:
        self._reaper.stopped.set()
        super().server_close()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def start_in_thread(server: WebhookServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"webhook-{server.port}", daemon=True)
    thread.start()
    return thread


def client_context(ca_file: str) -> ssl.SSLContext:
    """A client context trusting `ca_file` (used by tests, benchmarks and the bootstrap self-check)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
