"""The webhook under hostile clients: bounded connections, one deadline per request, a body budget, and memory.

The table is tested with real sockets (each slot's thread blocks in `recv`, as a connection's does), the whole
server as a real `injector serve` process over HTTPS with real certificates, measured from /proc.
"""

from __future__ import annotations

import json
import pathlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from katib_metrics.injector.connections import ConnectionTable, Limits, Slot
from katib_metrics.injector.server import MAX_BODY
from tests.injector import factories as f
from tests.injector.slowclients import Attack, ServeProcess, free_pod_review, rss_kib

CHART_MEMORY_LIMIT_KIB = 256 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Peers:
    """Connections whose server side is in the table, each with a thread that releases its slot when the
    table closes it (as the webhook's connection threads do)."""

    def __init__(self, table: ConnectionTable) -> None:
        self.table = table
        self.closed: list[Slot] = []
        self._keep: list[socket.socket] = []

    def connect(self) -> Slot | None:
        ours, theirs = socket.socketpair()
        self._keep.append(theirs)
        slot = self.table.admit(ours)
        if slot is not None:
            threading.Thread(target=self._serve, args=(ours, slot), daemon=True).start()
        return slot

    def _serve(self, sock: socket.socket, slot: Slot) -> None:
        while sock.recv(1024):
            pass
        self.closed.append(slot)
        self.table.release(slot)
        sock.close()


def reason(slot: Slot) -> str:
    """Why the table closed `slot` (a call, so that earlier checks of the field do not narrow its type)."""
    return slot.dropped


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_full_table_evicts_the_oldest_idle_then_the_oldest_unfinished_never_a_busy_one(clock: Clock) -> None:
    table = ConnectionTable(Limits(max_connections=3), clock)
    peers = Peers(table)
    busy, reading, idle = (peers.connect() for _ in range(3))
    assert busy and reading and idle
    table.busy(busy)
    clock.now += 1
    table.idle(idle)
    newest = peers.connect()  # full: the idle one goes first, although the unfinished one is older
    assert newest is not None and peers.closed == [idle] and idle.dropped == "evicted"
    assert len(table) == 3
    assert peers.connect() is not None and peers.closed == [idle, reading]  # then the oldest unfinished
    table.busy(newest)
    last = next(s for s in table._slots if s not in (busy, newest))
    table.busy(last)
    assert peers.connect() is None  # every connection is answering: the new one is refused, none dropped
    assert busy.dropped == "" and table.dropped == {"evicted": 2, "full": 1}


def test_one_deadline_per_request_however_the_bytes_trickle(clock: Clock) -> None:
    table = ConnectionTable(Limits(request_timeout=10, idle_timeout=60), clock)
    peers = Peers(table)
    slot = peers.connect()
    assert slot is not None
    for _ in range(9):  # a byte a second: each read starts nothing new
        clock.now += 1
        table.reading(slot)
        table.reap()
    assert not slot.dropped
    clock.now += 1
    table.reap()
    assert reason(slot) == "timeout"
    idle = peers.connect()
    assert idle is not None
    table.idle(idle)
    clock.now += 59
    table.reap()
    table.reading(idle)  # the next request's first byte: its own 10 s from now
    clock.now += 9.5
    table.reap()
    assert not idle.dropped
    clock.now += 1
    table.reap()
    assert reason(idle) == "timeout"


def test_the_body_budget_evicts_the_oldest_unfinished_holder(clock: Clock) -> None:
    table = ConnectionTable(Limits(body_budget=1000), clock)
    peers = Peers(table)
    first, second, third = (peers.connect() for _ in range(3))
    assert first and second and third
    assert table.take(first, 600) and table.take(second, 300)
    clock.now += 1
    assert table.take(third, 400)  # room made by closing the oldest holder, not the newcomer
    assert first.dropped == "budget" and table.held == 700 and not second.dropped
    table.busy(second)
    table.busy(third)
    fourth = peers.connect()
    assert fourth is not None and not table.take(fourth, 400)  # only busy requests hold bytes: refused
    table.idle(second)
    assert table.held == 400 and table.take(fourth, 400)


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path, "--request-timeout", "3", "--max-connections", "256")
    yield process
    process.stop()


def test_hundreds_of_stalled_and_trickling_clients_leave_admissions_fast(serve: ServeProcess) -> None:
    review = free_pod_review(extra_env=20)
    baseline = statistics.median(serve.admit(review)[0] for _ in range(10))
    attack = Attack(serve.port, serve.ca)
    try:
        for kind in ("tcp", "silent", "trickle"):  # 300 connections for 256 places
            attack.open(kind, 100)
        opened = time.monotonic()
        latencies = []
        while time.monotonic() < opened + 6:  # past every deadline (3 s)
            seconds, allowed = serve.admit(review)
            assert allowed
            latencies.append(seconds)
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while any(not a.closed_at for a in attack.attackers) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        attack.stop()
    assert all(a.closed_at for a in attack.attackers), "every hostile connection was closed by the webhook"
    tricklers = [a for a in attack.attackers if a.kind == "trickle"]
    # The newest connections outlive the evictions and end at their deadline, although they kept sending.
    survivors = [a for a in tricklers if a.closed_at - a.opened_at >= 2.0]
    assert len(survivors) >= 50
    assert all(a.sent >= 2 and a.closed_at - a.opened_at < 3 + 2.5 for a in survivors)
    assert max(latencies) < 2.0, f"slowest admission {max(latencies):.3f} s (baseline {baseline:.3f} s)"
    assert statistics.median(latencies) < max(0.25, 5 * baseline)


def test_large_bodies_held_open_stay_within_the_budget_and_the_chart_limit(serve: ServeProcess) -> None:
    review = free_pod_review()
    attack = Attack(serve.port, serve.ca, body=MAX_BODY)
    try:
        attack.open("burst", 75, burst=3 * 1024 * 1024)  # 225 MiB offered, each request a byte short of its end
        for _ in range(20):
            assert serve.admit(review)[1]
        peak = rss_kib(serve.process.pid, "VmHWM")
    finally:
        attack.stop()
    # 32 MiB of bodies at most, on top of the process's ~50 MiB; without the budget this was 275+ MiB.
    assert peak < CHART_MEMORY_LIMIT_KIB * 0.6, f"peak RSS {peak // 1024} MiB"


def test_the_body_cap_fits_real_reviews_with_room() -> None:
    """A big Trial pod (20 env vars, sidecar-sized spec) and a pod at the annotation limit both fit MAX_BODY."""
    big_trial = len(free_pod_review(extra_env=20))
    pod = f.pod()
    pod["metadata"]["annotations"] = {f"example.com/a{i}": "v" * 1000 for i in range(256)}  # 256 KiB: the limit
    pod["spec"]["containers"][0]["env"] = [{"name": f"VAR_{i}", "value": "x" * 64} for i in range(2000)]
    huge = len(json.dumps({"request": {"object": pod}}))
    assert big_trial < 16 * 1024 and huge < 512 * 1024
    assert 8 * huge <= MAX_BODY
