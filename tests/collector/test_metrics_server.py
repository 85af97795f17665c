"""The /metrics HTTP loop: answers scrapes, stops at once (no poll interval), survives a client that vanishes."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from katib_metrics.collector.metrics_server import start_metrics_server

pytestmark = pytest.mark.timeout(30)


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("probe", "A sample to find in the scrape.", registry=reg).inc(3)
    return reg


def test_scrape_then_close_at_once() -> None:
    servers = [start_metrics_server("127.0.0.1", 0, registry=registry()) for _ in range(5)]
    for server in servers:
        with urllib.request.urlopen(server.url, timeout=5) as reply:
            assert "probe_total 3.0" in reply.read().decode()
    start = time.monotonic()
    for server in servers:
        server.close()
    # serve_forever's stop poll (0.5 s) would make five closes take about 1.25 s; ours wake at once.
    assert time.monotonic() - start < 1.0
    for server in servers:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_client_that_connects_and_leaves_blocks_nothing() -> None:
    server = start_metrics_server("127.0.0.1", 0, registry=registry())
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # a reset before or after the accept
        with urllib.request.urlopen(server.url, timeout=5) as reply:
            assert reply.status == 200
    finally:
        start = time.monotonic()
        server.close()
        assert time.monotonic() - start < 1.0


def test_ipv6_loopback_is_served() -> None:
    try:
        socket.socket(socket.AF_INET6).close()
        server = start_metrics_server("::1", 0, registry=registry())
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url.startswith("http://[::1]:")
        with urllib.request.urlopen(server.url, timeout=5) as reply:
            assert "probe_total 3.0" in reply.read().decode()
    finally:
        server.close()
