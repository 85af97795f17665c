"""HTTP/1.1 on the webhook's connections: read one request, write one response (the server's wire format).

`http.server` parses every header block with the `email` package and writes the status line, each header and
the body separately (one TLS record each); under load that was a fifth of the injector's CPU. The webhook's
clients (the API server, probes, Prometheus) need little of HTTP: a request line, headers, a body sized by
`Content-Length` or chunked, keep-alive and `Expect: 100-continue`. That is all this module reads; each response
goes out in one `sendall`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol

__all__ = ["MAX_HEADERS", "MAX_HEADER_BYTES", "MAX_LINE", "HttpError", "Reader", "Request", "read_request",
           "response_bytes"]

MAX_LINE = 65536
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536  # all header lines together (the API server sends about 300 bytes)
PIECE = 65536  # the most body bytes read (then counted by `take`) at a time
_REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


class Reader(Protocol):
    """A buffered binary stream (a socket's `makefile("rb")`)."""

    def readline(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...

    def read1(self, size: int = -1, /) -> bytes: ...


class HttpError(Exception):
    """The request cannot be read; answer `status` with the message and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.method = ""  # the request's, when its request line could be read
        self.path = ""


@dataclass(slots=True)
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def _line(rfile: Reader) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise HttpError(431, f"a request line or header is longer than {MAX_LINE} bytes")
    return line


def _headers(rfile: Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    for _ in range(MAX_HEADERS + 1):
        line = _line(rfile)
        if line in (b"\r\n", b"\n", b""):
            return headers
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise HttpError(431, f"the request's header fields are longer than {MAX_HEADER_BYTES} bytes together")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise HttpError(431, f"more than {MAX_HEADERS} header fields")


Take = Callable[[int], None]


def _chunked(rfile: Reader, limit: int, take: Take) -> bytes:
    parts: list[bytes] = []
    size_total = 0
    while True:
        size_text = _line(rfile).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, f"malformed chunk size {size_text[:20]!r}") from None
        if size == 0:
            _headers(rfile)  # trailers, ignored
            return b"".join(parts)
        size_total += size
        if size_total > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
        _exactly(rfile, size, take, parts)
        _line(rfile)


def _exactly(rfile: Reader, size: int, take: Take, parts: list[bytes]) -> None:
    """Appends `size` bytes to `parts` as they arrive, each piece counted by `take` once read: memory follows
    the bytes that really came (one read ahead at most), not the length a client announced."""
    remaining = size
    while remaining:
        data = rfile.read1(min(remaining, PIECE))
        if not data:
            raise HttpError(400, f"connection closed after {size - remaining} of {size} body bytes")
        take(len(data))
        parts.append(data)
        remaining -= len(data)


def _no_budget(size: int) -> None:
    """The default `take`: no budget beyond `limit`."""


def _body(rfile: Reader, headers: dict[str, str], limit: int, take: Take) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(rfile, limit, take)
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise HttpError(400, f"invalid Content-Length {length[:20]!r}")
    if int(length) > limit:
        raise HttpError(413, f"request body of {length} bytes is larger than {limit}")
    parts: list[bytes] = []
    _exactly(rfile, int(length), take, parts)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_request(rfile: Reader, send: Callable[[bytes], object], limit: int,
                 take: Take = _no_budget) -> Request | None:
    """The next request on the connection, None when the client closed it between requests.

    `send` answers `Expect: 100-continue` before the body is read; bodies over `limit` bytes are refused;
    `take(n)` is called before each piece of body is read (it raises HttpError to refuse it).
    """
    line = _line(rfile)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request line
        line = _line(rfile)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HttpError(400, f"malformed request line {line[:80]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"unsupported protocol version {version[:20]!r}")
    path = target.split("?", 1)[0]
    try:
        headers = _headers(rfile)
        request = Request(method, path, version, headers)
        if method in ("POST", "PUT", "PATCH") or "content-length" in headers or "transfer-encoding" in headers:
            if headers.get("expect", "").lower() == "100-continue":
                send(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.body = _body(rfile, headers, limit, take)
    except HttpError as err:
        err.method, err.path = method, path
        raise
    return request


class _DateCache:
    """The Date header's value, formatted once per second."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        second = int(self._clock())
        if second != self._second:
            self._value, self._second = formatdate(second, usegmt=True), second
        return self._value


_date = _DateCache()


def response_bytes(status: int, body: bytes, content_type: str, *, close: bool = False,
                   extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """One whole response: status line, headers and body."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Date: {_date()}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in extra]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
