"""The HTTPS webhook: `/mutate-pod` (AdmissionReview v1), `/healthz`, `/readyz`, `/metrics`; decode, call, encode.

Threads, HTTP/1.1 keep-alive, TLS 1.2+ from a `CertificateReloader` (each new connection gets the current
certificate, so a rotated Secret is served without a restart). The same app answers on the plain-HTTP
metrics listener, except `/mutate-pod`.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from injector.admission import AdmissionHandler, Answer
from injector.certs import CertificateReloader
from injector.metrics import InjectorMetrics
from injector.review import denied

__all__ = ["MAX_BODY", "WebhookApp", "WebhookServer", "start_in_thread"]

log = logging.getLogger(__name__)
MAX_BODY = 8 * 1024 * 1024
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebhookServer
    timeout = 60  # idle keep-alive connections and stalled handshakes do not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready = app.ready.is_set()
            self._send(200 if ready else 503, b"ok\n" if ready else b"not ready\n")
        elif path == "/metrics":
            self._send(200, app.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, f"no such path {path}\n".encode())

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != WEBHOOK_PATH or not self.server.webhook:
            self._send(404, f"no such path {path}; the webhook is POST {WEBHOOK_PATH} on the TLS port\n".encode())
            return
        body = self._body()
        answer = self.server.app.admit(body if body is not None else b"")
        self._send(200, json.dumps(answer.review).encode(), "application/json")


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WebhookApp, reloader: CertificateReloader | None,
                 webhook: bool = True) -> None:
        self.app = app
        self.reloader = reloader
        self.webhook = webhook
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.reloader is None:
            return sock, address
        # The handshake happens in the connection's own thread, so a slow client cannot stall accept().
        return self.reloader.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

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
