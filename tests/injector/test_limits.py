"""The webhook under hostile clients: bounded connections, one deadline per request, a body budget, and memory.

The table is tested with real sockets (each slot's thread blocks in `recv`, as a connection's does), the whole
server as a real `injector serve` process over HTTPS with real certificates, measured from /proc.
"""

from __future__ import annotations

import json
import pathlib
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

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

    def connect(self, serve: bool = True) -> Slot | None:
        """A new connection; with `serve=False` nothing releases its slot until the test calls `release`
        (a connection thread that has not yet woken up, as under load)."""
        ours, theirs = socket.socketpair()
        self._keep.append(theirs)
        slot = self.table.admit(ours)
        if slot is not None and serve:
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


class Taker(threading.Thread):
    """`table.take(slot, size)` in its own thread, as a connection's thread calls it while reading a body."""

    def __init__(self, table: ConnectionTable, slot: Slot, size: int) -> None:
        super().__init__(daemon=True)
        self.table, self.slot, self.size = table, slot, size
        self.result: bool | None = None
        self.seconds = 0.0
        self.start()

    def run(self) -> None:
        started = time.monotonic()
        self.result = self.table.take(self.slot, self.size)
        self.seconds = time.monotonic() - started


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_a_request_waits_for_the_bytes_of_closed_connections_instead_of_being_refused(clock: Clock) -> None:
    """Under load a closed connection's thread wakes late. Its bytes are on their way back: a request that fits
    once they are is kept waiting (at most `release_wait`), not refused, and closes no one else."""
    table = ConnectionTable(Limits(body_budget=1000), clock)
    peers = Peers(table)
    slow, first, second = peers.connect(serve=False), peers.connect(), peers.connect()
    assert slow and first and second and table.take(slow, 900)
    asking = Taker(table, first, 500)
    wait_until(lambda: bool(slow.dropped))
    also = Taker(table, second, 200)  # nothing left to close: the old table refused this one at once
    time.sleep(0.2)
    assert asking.result is None and also.result is None
    table.release(slow)
    asking.join(5)
    also.join(5)
    assert asking.result is True and also.result is True
    assert table.held == 700 and table.dropped == {"budget": 1}


def test_concurrent_requests_close_only_the_holders_they_need(clock: Clock) -> None:
    table = ConnectionTable(Limits(body_budget=900), clock)
    peers = Peers(table)
    holders = [peers.connect(serve=False) for _ in range(3)]
    for holder in holders:
        assert holder is not None and table.take(holder, 300)
        clock.now += 1
    takers = [peers.connect() for _ in range(2)]
    assert takers[0] and takers[1]
    waiting = [Taker(table, takers[0], 100)]
    wait_until(lambda: bool(holders[0] and holders[0].dropped))
    waiting.append(Taker(table, takers[1], 100))  # the first holder's 300 bytes cover both
    time.sleep(0.2)
    assert [bool(h and h.dropped) for h in holders] == [True, False, False]
    table.release(holders[0])  # type: ignore[arg-type]
    for taker in waiting:
        taker.join(5)
        assert taker.result is True
    assert table.held == 800 and table.dropped == {"budget": 1}


def test_a_request_closed_while_waiting_for_room_gets_nothing_and_stops_at_once(clock: Clock) -> None:
    table = ConnectionTable(Limits(body_budget=1000, request_timeout=10), clock)
    peers = Peers(table)
    slow = peers.connect(serve=False)
    assert slow and table.take(slow, 900)
    clock.now += 5
    waiter = peers.connect(serve=False)
    assert waiter is not None
    asking = Taker(table, waiter, 500)
    wait_until(lambda: bool(slow.dropped))
    clock.now += 11  # past the waiter's request deadline
    table.reap()
    asking.join(5)
    assert asking.result is False and asking.seconds < 1.0 and waiter.held == 0
    assert table.held == 900  # the slow thread has still not released its bytes


def test_a_request_gives_up_when_closed_connections_never_release(clock: Clock) -> None:
    table = ConnectionTable(Limits(body_budget=1000, release_wait=0.3), clock)
    peers = Peers(table)
    slow, asking_slot = peers.connect(serve=False), peers.connect()
    assert slow and asking_slot and table.take(slow, 900)
    asking = Taker(table, asking_slot, 500)
    asking.join(5)
    assert asking.result is False and 0.3 <= asking.seconds < 2.0
    assert table.dropped == {"budget": 2} and table.held == 900


def test_many_requests_and_late_releases_keep_the_budget_exact(clock: Clock) -> None:
    """Random sizes from many threads, slots released late at random: the budget is never exceeded, and
    what the table holds is exactly what its live slots hold."""
    rng = random.Random(11)
    table = ConnectionTable(Limits(body_budget=10_000, max_connections=1000), clock)
    peers = Peers(table)
    slots = [peers.connect(serve=False) for _ in range(60)]
    over: list[int] = []

    def body(slot: Slot) -> None:
        for _ in range(rng.randrange(1, 6)):
            if not table.take(slot, rng.randrange(1, 3000)):
                break
            over.append(max(0, table.held - 10_000))
            clock.now += 0.001

    def releaser() -> None:
        while any(s for s in slots if s and s.dropped and s in table._slots):
            for slot in [s for s in slots if s and s.dropped]:
                time.sleep(rng.random() * 0.01)
                table.release(slot)

    threads = [threading.Thread(target=body, args=(s,)) for s in slots if s]
    for thread in threads:
        thread.start()
    releasing = threading.Thread(target=releaser)
    releasing.start()
    for thread in threads:
        thread.join(10)
    releasing.join(10)
    assert not any(t.is_alive() for t in threads)
    assert max(over) == 0
    live = [s for s in slots if s and s in table._slots]
    assert table.held == sum(s.held for s in live) <= 10_000
    assert table.dropped["budget"] > 0


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
