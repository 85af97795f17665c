"""A local HTTPS image registry that answers like a real one: OCI distribution API, Bearer token challenge.

Serves manifests (OCI indexes, Docker manifests) and config blobs; `/token` issues tokens for
`repository:<name>:pull` scopes (private repositories only to `users`); blobs are redirected to a "storage"
host (the same server under another name, as registries hand blobs to a CDN) that refuses requests carrying
an Authorization header, as presigned-URL stores do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


class FakeRegistry(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, *, auth: str = "bearer") -> None:
        self.context = context
        self.auth = auth  # "bearer", "basic" or "none"
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # (repo, tag or digest) → (type, body)
        self.blobs: dict[str, bytes] = {}
        self.private: set[str] = set()
        self.users: dict[str, str] = {}
        self.tokens: dict[str, set[str]] = {}  # token → repositories it may pull
        self.hits: Counter[str] = Counter()
        self.storage_saw_authorization = 0
        self.delay = 0.0
        self.storage_base = ""  # where blobs are sent (default https://127.0.0.1:<port>, another host)
        self.plain_too = False  # also answer plain HTTP on the same port (told apart by the first byte)
        self.redirects: dict[str, str] = {}  # path → Location, answered 307 before anything else
        self.authorizations: list[str] = []  # the Authorization header of every request ("" when none)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.plain_too and sock.recv(1, socket.MSG_PEEK) != b"\x16":  # not a TLS handshake record
            return sock, address
        return self.context.wrap_socket(sock, server_side=True), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up (timeouts) are part of the tests

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    @property
    def local_hosts(self) -> tuple[str, str]:
        """The registry and its storage host: what a client must allow to reach them on loopback."""
        return self.host, f"127.0.0.1:{self.port}"

    def push(self, repo: str, tag: str, config: dict[str, Any], *, media_type: str = OCI_MANIFEST) -> str:
        """Stores an image whose config is {"config": config}; returns the manifest digest."""
        blob = json.dumps({"architecture": "amd64", "os": "linux", "config": config}).encode()
        self.blobs[digest(blob)] = blob
        manifest = json.dumps({"schemaVersion": 2, "mediaType": media_type,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": digest(blob), "size": len(blob)},
                               "layers": []}).encode()
        self.manifests[(repo, tag)] = (media_type, manifest)
        self.manifests[(repo, digest(manifest))] = (media_type, manifest)
        return digest(manifest)

    def push_index(self, repo: str, tag: str, platforms: dict[str, dict[str, Any]]) -> str:
        """A multi-platform image: {"linux/amd64": config, ...}; returns the index digest."""
        entries = []
        for platform, config in platforms.items():
            os_name, arch, *variant = platform.split("/")
            manifest_digest = self.push(repo, f"{tag}-{os_name}-{arch}", config)
            size = len(self.manifests[(repo, manifest_digest)][1])
            entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": size,
                                     "platform": {"os": os_name, "architecture": arch}}
            if variant:
                entry["platform"]["variant"] = variant[0]
            entries.append(entry)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        self.manifests[(repo, tag)] = (OCI_INDEX, index)
        self.manifests[(repo, digest(index))] = (OCI_INDEX, index)
        return digest(index)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeRegistry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, error: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": error, "message": error.lower()}]}).encode()
        self._send(code, body, {"Content-Type": "application/json", **(headers or {})})

    def _basic_user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.server.users.get(user) == password else None

    def _token(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        repo = query.get("scope", [""])[0].split(":")[1] if ":" in query.get("scope", [""])[0] else ""
        if self.headers.get("Authorization") and self._basic_user() is None:
            self._error(401, "UNAUTHORIZED")
            return
        token = secrets.token_hex(8)
        allowed = repo not in self.server.private or self._basic_user() is not None
        with self.server.lock:
            self.server.tokens[token] = {repo} if allowed else set()
        self._send(200, json.dumps({"token": token, "expires_in": 300}).encode(),
                   {"Content-Type": "application/json"})

    def _authorized(self, repo: str) -> bool:
        header = self.headers.get("Authorization", "")
        if self.server.auth == "none":
            return repo not in self.server.private
        if self.server.auth == "basic":
            return (repo not in self.server.private and not header) or self._basic_user() is not None
        if header.startswith("Bearer "):
            return repo in self.server.tokens.get(header[7:], set())
        return False

    def _challenge(self, repo: str) -> None:
        if self.server.auth == "basic":
            challenge = 'Basic realm="fake registry"'
        else:
            challenge = (f'Bearer realm="https://{self.server.host}/token",service="fake-registry",'
                         f'scope="repository:{repo}:pull"')
        self._error(401, "UNAUTHORIZED", {"WWW-Authenticate": challenge})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        with self.server.lock:
            self.server.hits[path] += 1
            self.server.authorizations.append(self.headers.get("Authorization", ""))
        if path in self.server.redirects:
            self._send(307, b"", {"Location": self.server.redirects[path]})
            return
        if self.server.delay:
            time.sleep(self.server.delay)  # a slow registry, not a wait for a test thread
        if path == "/token":
            self._token()
        elif path.startswith("/storage/"):
            self._storage(path[len("/storage/"):])
        elif path.startswith("/v2/") and "/manifests/" in path:
            repo, _, reference = path[4:].partition("/manifests/")
            self._manifest(repo, reference)
        elif path.startswith("/v2/") and "/blobs/" in path:
            repo, _, blob = path[4:].partition("/blobs/")
            self._blob(repo, blob)
        else:
            self._error(404, "NOT_FOUND")

    def _manifest(self, repo: str, reference: str) -> None:
        if not self._authorized(repo):
            self._challenge(repo)
            return
        found = self.server.manifests.get((repo, reference))
        if found is None:
            self._error(404, "MANIFEST_UNKNOWN")
            return
        media_type, body = found
        self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest(body)})

    def _blob(self, repo: str, blob: str) -> None:
        if not self._authorized(repo):
            self._challenge(repo)
            return
        if blob not in self.server.blobs:
            self._error(404, "BLOB_UNKNOWN")
            return
        # To the "storage" host: the same server under its IP address, so credentials must not follow.
        base = self.server.storage_base or f"https://127.0.0.1:{self.server.port}"
        self._send(307, b"", {"Location": f"{base}/storage/{blob}?sig=abc"})

    def _storage(self, blob: str) -> None:
        if self.headers.get("Authorization"):
            with self.server.lock:
                self.server.storage_saw_authorization += 1
            self._error(400, "ONLY_ONE_AUTH_MECHANISM_ALLOWED")
            return
        body = self.server.blobs.get(blob)
        if body is None:
            self._error(404, "NO_SUCH_KEY")
        else:
            self._send(200, body, {"Content-Type": "application/octet-stream"})
