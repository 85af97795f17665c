"""A local HTTP server that answers the injector's requests the way the Kubernetes API server does.

GETs of namespaced and cluster-scoped objects; POST (create, 409 AlreadyExists), PUT (replace, 409 Conflict on a
stale resourceVersion) and PATCH (JSON patch, merge patch) for the certificate bootstrap's Secret and webhook
configuration. `failures` answers a path with an error status for any method, `write_failures` one method only.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonpatch

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)/(?P<name>[^/?]+)$")


class FakeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, int] = {}   # path → HTTP status to answer instead
        self.delay = 0.0
        self.hits: Counter[str] = Counter()
        self.write_failures: dict[tuple[str, str], int] = {}  # (method, path) → HTTP status
        self.writes: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._version = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Sets a new resourceVersion (and a uid once), as the API server does on every write."""
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._version)
        meta.setdefault("uid", str(uuid.uuid4()))
        return obj

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are part of the tests

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, obj: dict[str, Any], plural: str) -> str:
        api = obj["apiVersion"]
        prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
        meta = obj["metadata"]
        scope = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        path = f"{prefix}{scope}/{plural}/{meta['name']}"
        with self.lock:
            self.objects[path] = self.stamp(copy.deepcopy(obj))
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

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _write_refused(self, method: str, path: str) -> bool:
        with self.server.lock:
            self.server.writes.append((method, path))
        code = self.server.write_failures.get((method, path)) or self.server.failures.get(path)
        if code:
            self._status(code, "Forbidden" if code == 403 else "InternalError", f"{method} {path} refused")
        return bool(code)

    def do_POST(self) -> None:
        collection = self.path.split("?", 1)[0]
        body = self._read_json()
        path = f"{collection}/{body['metadata']['name']}"
        if self._write_refused("POST", path):
            return
        with self.server.lock:
            if path in self.server.objects:
                self._status(409, "AlreadyExists", f'"{body["metadata"]["name"]}" already exists')
                return
            self.server.objects[path] = self.server.stamp(body)
            self._json(201, body)

    def do_PUT(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_json()
        if self._write_refused("PUT", path):
            return
        with self.server.lock:
            current = self.server.objects.get(path)
            if current is None:
                self._status(404, "NotFound", "not found")
                return
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                self._status(409, "Conflict", "the object has been modified; please apply your changes to the "
                                              "latest version and try again")
                return
            self.server.objects[path] = self.server.stamp(body)
            self._json(200, body)

    def do_PATCH(self) -> None:
        path = self.path.split("?", 1)[0]
        kind = self.headers.get("Content-Type", "")
        body = self._read_json()
        if self._write_refused("PATCH", path):
            return
        with self.server.lock:
            current = self.server.objects.get(path)
            if current is None:
                self._status(404, "NotFound", "not found")
                return
            if kind.startswith("application/json-patch+json"):
                try:
                    patched = jsonpatch.apply_patch(current, body)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    self._status(422, "Invalid", f"the server rejected our request due to an error in our "
                                                 f"request: {err}")
                    return
            else:
                self._status(415, "UnsupportedMediaType", f"unsupported patch type {kind} in this test server")
                return
            self.server.objects[path] = self.server.stamp(patched)
            self._json(200, patched)
