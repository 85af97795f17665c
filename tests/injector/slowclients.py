"""Hostile webhook clients for the limit tests: a real `injector serve` process and connections that stall.

`ServeProcess` runs `katib-metrics injector serve` with real certificates (no API server: pods that no Trial
owns are admitted without one) and reads its RSS from /proc. `Attack` opens connections of four kinds and
keeps them going from one thread: TCP without a TLS handshake, TLS and silence, headers announcing a full-size
body then one byte a second, and a large body sent quickly then stalled just before its end.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from katib_metrics.injector.certs import issue_certificates
from katib_metrics.injector.server import client_context
from tests.injector import factories as f

POST_HEAD = ("POST /mutate-pod?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             "Content-Length: {length}\r\n\r\n")


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A process's resident memory (VmRSS) or its peak (VmHWM), in KiB, from /proc."""
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match[1])


class ServeProcess:
    """`katib-metrics injector serve` on 127.0.0.1, a free port, with a fresh CA."""

    def __init__(self, tmp: pathlib.Path, *extra: str) -> None:
        issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
        for name, data in (("ca.crt", issued.ca_pem), ("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
            (tmp / name).write_bytes(data)
        (tmp / "kubeconfig").write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": {"token": "x"}}],
            "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}]}))
        (tmp / "katib-config.yaml").write_text(f.ALL_KINDS_CONFIG)
        self.ca = str(tmp / "ca.crt")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katib_metrics", "injector", "serve", "--listen", "127.0.0.1:0",
             "--tls-cert-file", str(tmp / "tls.crt"), "--tls-key-file", str(tmp / "tls.key"),
             "--kubeconfig", str(tmp / "kubeconfig"), "--katib-config", str(tmp / "katib-config.yaml"), *extra],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "KATIB_INJECTOR_LOG_LEVEL": "INFO"})
        assert self.process.stderr is not None
        for line in self.process.stderr:  # the first listener's announcement: it serves from then on
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found[1])
                break
        else:
            raise AssertionError(f"injector serve exited with {self.process.wait()}")
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep its log pipe drained

    def admit(self, body: bytes, timeout: float = 10.0) -> tuple[float, bool]:
        """(seconds, allowed) of one admission on a new connection, TLS handshake included."""
        started = time.monotonic()
        conn = http.client.HTTPSConnection("localhost", self.port, context=client_context(self.ca), timeout=timeout)
        try:
            conn.request("POST", "/mutate-pod", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
        finally:
            conn.close()
        return time.monotonic() - started, response.status == 200 and answer["response"]["allowed"] is True

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def free_pod_review(extra_env: int = 0) -> bytes:
    """The AdmissionReview of a pod that no Trial owns (admitted as is, no API call)."""
    pod = f.pod()
    pod["metadata"].pop("ownerReferences", None)
    pod["spec"]["containers"][0]["env"] = [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(extra_env)]
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "resource": {"group": "", "version": "v1", "resource": "pods"},
                                   "namespace": "team-a", "operation": "CREATE", "object": pod,
                                   "userInfo": {"username": "system:serviceaccount:kubeflow:katib-controller"}}
                       }).encode()


@dataclass
class Attacker:
    """One hostile connection; `closed_at` is when the server closed it (monotonic), `opened_at` when made."""

    kind: str
    sock: socket.socket | ssl.SSLSocket
    opened_at: float
    closed_at: float = 0.0
    sent: int = 0


@dataclass
class Attack:
    """Hostile connections to `port`, kept alive (and trickling) by one thread until `stop()`."""

    port: int
    ca: str
    body: int = 4 * 1024 * 1024
    attackers: list[Attacker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._context = client_context(self.ca)

    def open(self, kind: str, count: int, burst: int = 0) -> None:
        """`count` connections of `kind`: "tcp", "silent", "trickle" or "burst" (`burst` body bytes, no end)."""
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock: socket.socket | ssl.SSLSocket = raw
            try:
                if kind != "tcp":
                    sock = self._context.wrap_socket(raw, server_hostname="localhost")
                if kind in ("trickle", "burst"):
                    sock.sendall(POST_HEAD.format(length=self.body).encode())
                if kind == "burst":
                    sock.sendall(b" " * burst)
            except OSError:
                now = time.monotonic()
                self.attackers.append(Attacker(kind, sock, now, now))  # closed by the server at once
                continue
            sock.setblocking(False)
            with self._lock:
                self.attackers.append(Attacker(kind, sock, time.monotonic()))
        if not self._thread.is_alive():
            self._thread.start()

    def _trickle(self) -> None:
        """Every second: one byte more on each trickler; every attacker is checked for a close by the server."""
        while not self._stop.wait(1.0):
            with self._lock:
                alive = [a for a in self.attackers if not a.closed_at]
            for attacker in alive:
                try:
                    if attacker.kind == "trickle":
                        attacker.sock.send(b" ")
                        attacker.sent += 1
                    if attacker.sock.recv(1) == b"":
                        attacker.closed_at = time.monotonic()
                except (TimeoutError, ssl.SSLWantReadError, BlockingIOError):
                    pass  # still open, nothing to read
                except OSError:
                    attacker.closed_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for attacker in self.attackers:
            attacker.sock.close()
