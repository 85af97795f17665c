"""A local HTTP server that answers the few GETs the injector makes the way the Kubernetes API server does."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)/(?P<name>[^/?]+)$")


class FakeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, int] = {}   # path → HTTP status to answer instead
        self.delay = 0.0
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are part of the tests

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, obj: dict[str, Any], plural: str) -> str:
        api = obj["apiVersion"]
        prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
        meta = obj["metadata"]
        path = f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
        self.objects[path] = obj
        return path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
        if self.server.delay:
            time.sleep(self.server.delay)  # a slow API server, not a wait for a test thread
        if path in self.server.failures:
            self._status(self.server.failures[path], "InternalError", "etcdserver: request timed out")
            return
        match = _PATH.match(path)
        if path in self.server.objects:
            self._json(200, self.server.objects[path])
        elif match:
            self._status(404, "NotFound", f'{match["plural"]} "{match["name"]}" not found')
        else:
            self._status(404, "NotFound", "the server could not find the requested resource")
