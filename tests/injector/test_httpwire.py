"""The webhook's HTTP/1.1 reading and writing: over byte streams, and over the real TLS server with raw sockets."""

from __future__ import annotations

import http.client
import io
import json
import pathlib
import socket
import ssl
from collections.abc import Iterator

import pytest

from katib_metrics.injector.httpwire import MAX_HEADERS, HttpError, Request, read_request, response_bytes
from tests.injector import factories as f
from tests.injector.test_server import Webhook, review, trial_api


@pytest.fixture
def webhook(tmp_path: pathlib.Path) -> Iterator[Webhook]:
    api = trial_api()
    hook = Webhook(api, tmp_path)
    yield hook
    hook.close()
    api.shutdown()
    api.server_close()


def read(raw: bytes, limit: int = 1000) -> tuple[Request | None, list[bytes]]:
    sent: list[bytes] = []
    return read_request(io.BytesIO(raw), sent.append, limit), sent


def test_request_with_content_length_keeps_the_connection() -> None:
    request, sent = read(b"POST /mutate-pod?timeout=10s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"X-A: 1\r\nx-a: 2\r\n\r\nhelloNEXT")
    assert request is not None and not sent
    assert (request.method, request.path, request.body) == ("POST", "/mutate-pod", b"hello")
    assert request.headers["x-a"] == "1, 2" and request.keep_alive


@pytest.mark.parametrize(("raw", "keep_alive"), [
    (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    (b"\r\nGET / HTTP/1.1\r\n\r\n", True),
])
def test_keep_alive_follows_the_version_and_connection_header(raw: bytes, keep_alive: bool) -> None:
    request, _ = read(raw)
    assert request is not None and request.keep_alive is keep_alive


def test_chunked_body_and_expect_continue() -> None:
    raw = (b"POST /mutate-pod HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    request, sent = read(raw)
    assert request is not None and request.body == b"hello world"
    assert sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_closed_connection_between_requests_is_none() -> None:
    assert read(b"")[0] is None


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n bad: folded\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n", 413),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + (b"X: " + b"y" * 30000 + b"\r\n") * 3 + b"\r\n", 431),  # all lines together
])
def test_malformed_requests_name_the_problem(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as caught:
        read(raw)
    assert caught.value.status == status and str(caught.value)


def test_body_bytes_are_counted_as_they_arrive_and_a_refusal_stops_the_read() -> None:
    counted: list[int] = []
    body = b"x" * 200_000
    raw = b"POST /mutate-pod HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" + body
    request = read_request(io.BufferedReader(io.BytesIO(raw), 8192), lambda _: None, 1 << 20, counted.append)
    assert request is not None and request.body == body
    assert sum(counted) == len(body) and max(counted) <= 65536  # in pieces, never the announced length at once

    def refuse(size: int) -> None:
        raise HttpError(503, "no budget")

    with pytest.raises(HttpError, match="no budget"):
        read_request(io.BytesIO(raw), lambda _: None, 1 << 20, refuse)
    announced = b"POST /mutate-pod HTTP/1.1\r\nContent-Length: 900000\r\n\r\n" + b"x" * 10
    counted.clear()
    with pytest.raises(HttpError, match="closed after 10 of 900000"):
        read_request(io.BytesIO(announced), lambda _: None, 1 << 20, counted.append)
    assert counted == [10]  # a client that announces much but sends little costs what it sent


def test_response_is_one_block_with_date_and_length() -> None:
    head, _, body = response_bytes(200, b"{}", "application/json", close=True).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK" and body == b"{}"
    assert "Content-Length: 2" in lines and "Connection: close" in lines
    assert any(line.startswith("Date: ") and line.endswith(" GMT") for line in lines)


def _tls(hook: Webhook) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(hook.ca))
    sock = socket.create_connection(("127.0.0.1", hook.servers[0].port), timeout=10)
    return context.wrap_socket(sock, server_hostname="localhost")


def _response(conn: ssl.SSLSocket) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(conn)
    response.begin()
    return response


def test_chunked_admission_with_expect_continue_over_tls(webhook: Webhook) -> None:
    body = review(f.pod())
    with _tls(webhook) as conn:
        conn.sendall(b"POST /mutate-pod HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert conn.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        half = len(body) // 2
        for chunk in (body[:half], body[half:]):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.sendall(b"0\r\n\r\n")
        response = _response(conn)
        assert response.status == 200
        assert json.loads(response.read())["response"]["patchType"] == "JSONPatch"


def test_head_put_and_bad_requests_over_tls(webhook: Webhook) -> None:
    conn = webhook.connection()
    conn.request("HEAD", "/healthz")
    head = conn.getresponse()
    assert head.status == 200 and head.getheader("Content-Length") == "3" and head.read() == b""
    conn.request("PUT", "/mutate-pod", body=b"{}")
    put = conn.getresponse()
    assert put.status == 405 and put.getheader("Allow") == "GET, HEAD, POST"
    put.read()
    conn.request("GET", "/healthz")  # the same connection still serves
    assert conn.getresponse().read() == b"ok\n"
    with _tls(webhook) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        response = _response(raw)
        assert response.status == 400 and b"malformed request line" in response.read()
        assert raw.recv(1) == b""  # closed after an unreadable request


def test_unreadable_webhook_call_still_gets_an_admission_review(webhook: Webhook) -> None:
    with _tls(webhook) as raw:
        raw.sendall(b"POST /mutate-pod HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999\r\n\r\n")
        response = _response(raw)
        answer = json.loads(response.read())["response"]
        assert response.status == 200 and response.getheader("Connection") == "close"
        assert answer["allowed"] is False and answer["status"]["code"] == 400
        assert "could not be read (HTTP 413)" in answer["status"]["message"]
        assert raw.recv(1) == b""
    invalid = webhook.metrics.registry.get_sample_value("katib_injector_admissions_total", {"outcome": "invalid"})
    assert invalid == 1.0
