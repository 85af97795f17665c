"""The HTTP server behind the sidecar's `/metrics`: prometheus_client's WSGI app on a loop that stops at once.

prometheus_client's own `start_http_server` runs `serve_forever`, which looks at its stop flag only
every 0.5 s: the sidecar's exit waited that long after the final report was acknowledged. Here the
serving thread sleeps on the listening socket and a wake-up pipe together, so it costs nothing while
nobody scrapes and `close()` returns as soon as a scrape under way is answered.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["MetricsServer", "MetricsServerError", "serve_metrics", "start_metrics_server"]


class MetricsServerError(OSError):
    """`/metrics` cannot be served at the address asked for; the message names it and the fix."""


class _QuietHandler(WSGIRequestHandler):
    timeout = 5  # scrapes are answered one at a time: a client that stalls may hold /metrics this long at most

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: a line per scrape would drown the sidecar's own log."""


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint (plain HTTP, a daemon thread); `close()` stops it."""

    address: str
    port: int
    _httpd: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _wake: int = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed
            os.write(self._wake, b"!")
        self._thread.join(timeout=5)
        self._httpd.server_close()
        with contextlib.suppress(OSError):
            os.close(self._wake)


def serve_metrics(
    port: int, address: str = "0.0.0.0", *, registry: CollectorRegistry
) -> MetricsServer | None:
    """Serve `registry` on `--metrics-port`; port 0 means off (Katib's flag sets have no such port)."""
    if port == 0:
        return None
    return start_metrics_server(address, port, registry=registry)


def start_metrics_server(address: str, port: int, *, registry: CollectorRegistry) -> MetricsServer:
    """Serve `registry` at `address:port`; port 0 binds an ephemeral port (tests), read back in `.port`."""
    if not 0 <= port <= 65535:
        raise MetricsServerError(f"invalid metrics port {port}: expected 1-65535 (0 turns /metrics off)")
    try:
        httpd = _bind(address, port, registry)
    except OSError as exc:
        raise MetricsServerError(
            f"cannot serve /metrics on {address}:{port}: {exc.strerror or exc}; "
            "choose a free --metrics-port or another --metrics-address"
        ) from exc
    wake_r, wake_w = os.pipe()
    thread = threading.Thread(target=_serve, args=(httpd, wake_r), name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(address, httpd.server_port, httpd, thread, wake_w)


def _bind(address: str, port: int, registry: CollectorRegistry) -> WSGIServer:
    # IPv4 or IPv6 as the address says (HTTPServer alone assumes IPv4).
    family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
    # One scrape at a time in the serving thread: a thread per scrape cost about a third of each answer's CPU.
    server_class = type("MetricsHTTPServer", (WSGIServer,), {"address_family": family})
    httpd: WSGIServer = make_server(str(sockaddr[0]), port, make_wsgi_app(registry), server_class,
                        handler_class=_QuietHandler)
    httpd.socket.setblocking(False)  # a client gone before accept() must not block the loop (and its stop)
    return httpd


def _serve(httpd: WSGIServer, wake: int) -> None:
    """Answer scrapes, one at a time, until a byte arrives on `wake`."""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(httpd.fileno(), selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if wake in ready:
                    return
                httpd.handle_request()  # accepts the pending connection, never waits
    finally:
        os.close(wake)
