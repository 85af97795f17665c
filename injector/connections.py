"""The webhook's bounds on its clients: how many connections, how long one request may take, body bytes held.

Any pod in the cluster can reach the webhook, so a client that connects and stalls, or trickles a byte a
second, must cost little and not for long, and must never keep the API server waiting:

- at most `max_connections` connections, one thread each (so threads are bounded too). When all are taken a
  new connection evicts the oldest one that is idle between requests, else the oldest still sending its
  request: a real request is sent in milliseconds, so the oldest unfinished one is the staller;
- one deadline per request, from its first byte (or the accept) to its last body byte, TLS handshake
  included; a reaper thread closes connections past it (so a trickle of bytes cannot extend it, as a
  per-`recv` timeout would), and idle keep-alive connections after `idle_timeout`;
- body bytes read into memory, all connections together, within `body_budget`; a request that needs more
  evicts the oldest unfinished request holding some (only as many as the shortfall beyond the bytes already
  on their way back from closed connections), waits up to `release_wait` for those bytes, else it is refused
  (503). Under load a closed connection's thread may take a while to wake and release them.

A connection is closed from the reaper's or the acceptor's thread with `shutdown(2)`, which wakes its own
thread out of `recv`; that thread then releases the slot.
"""

from __future__ import annotations

import contextlib
import enum
import io
import itertools
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ConnectionTable", "Limits", "Slot", "SlotReader"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 256
    request_timeout: float = 10.0  # the API server's default webhook timeout: no answer is useful after it
    idle_timeout: float = 60.0
    body_budget: int = 32 * 1024 * 1024
    reap_interval: float = 0.25
    release_wait: float = 2.0  # the longest a request waits for the bytes of closed connections to come back


class State(enum.Enum):
    READING = "reading"  # handshake, request line, headers, body
    IDLE = "idle"  # between requests on a keep-alive connection
    BUSY = "busy"  # answering: never evicted (its answer is on the way)


@dataclass(eq=False, slots=True)
class Slot:
    sock: socket.socket
    state: State
    deadline: float
    since: float
    order: int
    held: int = 0  # body bytes of the current request, counted in the budget
    dropped: str = ""  # why it was closed from outside, once it was


@dataclass
class ConnectionTable:
    """The live connections, their deadlines and the body-byte budget; thread-safe."""

    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    dropped: Counter[str] = field(default_factory=Counter)  # reason → connections closed by us

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: set[Slot] = set()
        self._held = 0
        self._wanted = 0  # body bytes asked for by requests in `take`, the waiting ones included
        self._order = itertools.count()

    def __len__(self) -> int:
        with self._cond:
            return len(self._slots)

    @property
    def held(self) -> int:
        with self._cond:
            return self._held

    def admit(self, sock: socket.socket) -> Slot | None:
        """A slot for a new connection, evicting an idle or stalled one when full; None when every slot is busy."""
        with self._cond:
            while len(self._slots) >= self.limits.max_connections:
                victim = self._oldest(lambda s: s.state is State.IDLE) or \
                    self._oldest(lambda s: s.state is State.READING)
                if victim is None:
                    self.dropped["full"] += 1
                    return None
                self._drop(victim, "evicted")
                if not self._cond.wait_for(lambda v=victim: v not in self._slots, timeout=2.0):  # type: ignore[misc]
                    return None
            now = self.clock()
            slot = Slot(sock, State.READING, now + self.limits.request_timeout, now, next(self._order))
            self._slots.add(slot)
            return slot

    def release(self, slot: Slot) -> None:
        with self._cond:
            self._held -= slot.held
            slot.held = 0
            self._slots.discard(slot)
            self._cond.notify_all()

    def reading(self, slot: Slot) -> None:
        """The first byte of a request arrived on an idle connection: its deadline starts."""
        if slot.state is State.IDLE:
            with self._cond:
                now = self.clock()
                slot.state, slot.deadline, slot.since = State.READING, now + self.limits.request_timeout, now

    def busy(self, slot: Slot) -> None:
        with self._cond:
            slot.state, slot.deadline = State.BUSY, float("inf")

    def idle(self, slot: Slot) -> None:
        """The answer was sent: the body's bytes go back to the budget; the connection may wait for another."""
        with self._cond:
            self._held -= slot.held
            slot.held = 0
            slot.state, slot.deadline = State.IDLE, self.clock() + self.limits.idle_timeout
            slot.since = self.clock()
            self._cond.notify_all()

    def writing(self, slot: Slot) -> None:
        """Sending the answer: a client that does not read it gets the request deadline, then is closed."""
        with self._cond:
            slot.deadline = self.clock() + self.limits.request_timeout

    def take(self, slot: Slot, size: int) -> bool:
        """Count `size` more body bytes of `slot`'s request; False when the budget cannot make room in time.

        The bytes of connections already closed come back as soon as their threads release them, so only the
        shortfall beyond those is evicted (concurrent requests do not each close another holder), and a
        request waits for them at most `release_wait` seconds. A connection closed while it waits gets nothing.
        """
        with self._cond:
            give_up = time.monotonic() + self.limits.release_wait
            self._wanted += size
            try:
                while self._held + size > self.limits.body_budget:
                    if slot.dropped:
                        return False
                    coming = sum(s.held for s in self._slots if s.dropped)
                    if self._held - coming + self._wanted > self.limits.body_budget:  # waiters' bytes included
                        victim = self._oldest(lambda s: s.state is State.READING and s.held > 0 and s is not slot)
                        if victim is not None:
                            self._drop(victim, "budget")
                            continue
                    left = give_up - time.monotonic()
                    if not coming or left <= 0:
                        self.dropped["budget"] += 1
                        return False
                    self._cond.wait(left)
                self._held += size
                slot.held += size
                return True
            finally:
                self._wanted -= size

    def reap(self) -> None:
        """Close every connection past its deadline."""
        with self._cond:
            now = self.clock()
            for slot in [s for s in self._slots if s.deadline <= now and not s.dropped]:
                self._drop(slot, "timeout" if slot.state is State.READING else slot.state.value)

    def _oldest(self, wanted: Callable[[Slot], bool]) -> Slot | None:
        candidates = [s for s in self._slots if not s.dropped and wanted(s)]
        return min(candidates, key=lambda s: (s.since, s.order)) if candidates else None

    def _drop(self, slot: Slot, reason: str) -> None:
        slot.dropped = reason
        self.dropped[reason] += 1
        self._cond.notify_all()  # its thread may be waiting in `take`
        # The plain socket's shutdown, also for TLS sockets: it wakes the owner's blocked recv without touching
        # the TLS state another thread is using. OSError: already closed by its peer.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(slot.sock, socket.SHUT_RDWR)


class Reaper(threading.Thread):
    """Calls `table.reap()` every `reap_interval` until stopped."""

    def __init__(self, table: ConnectionTable, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.table = table
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.table.limits.reap_interval):
            self.table.reap()


class SlotReader(io.RawIOBase):
    """The connection's bytes for a BufferedReader; the first byte after an idle wait starts a request."""

    def __init__(self, sock: socket.socket, table: ConnectionTable, slot: Slot) -> None:
        super().__init__()
        self._sock, self._table, self._slot = sock, table, slot

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self._sock.recv_into(buffer)
        if count:
            self._table.reading(self._slot)
        return count
