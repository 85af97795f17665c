"""A short-lived, single-flight cache for what the injector reads from the API server and image registries.

A burst of pods of one trial must cost one lookup: concurrent misses of one key share a single load, and
they share its failure too (a dead registry then costs one timeout per burst, not one per pod queued behind
the first). Failures are not kept once the burst has its answer; the next miss tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TtlCache"]


class _Flight:
    """One load in progress; callers that join it wait for its value or its error."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class TtlCache:
    """Values kept for `ttl` seconds (or the `ttl` given to `get`); concurrent misses of one key load once."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[object, tuple[float, Any]] = {}
        self._flights: dict[object, _Flight] = {}
        self.loads = 0

    def _lookup(self, key: object) -> tuple[bool, Any]:
        """(True, value) on a hit; else (True, flight) to join or (False, new flight) to lead."""
        with self._lock:
            entry = self._values.get(key)
            if entry is not None and entry[0] > self._clock():
                return True, entry[1]
            flight = self._flights.get(key)
            if flight is not None:
                return True, flight
            flight = self._flights[key] = _Flight()
            return False, flight

    def get(self, key: object, load: Callable[[], Any], ttl: float | None = None) -> Any:
        found, value = self._lookup(key)
        if found and not isinstance(value, _Flight):
            return value
        flight: _Flight = value
        if found:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = load()
        except BaseException as err:
            flight.error = err
            raise
        else:
            with self._lock:
                self.loads += 1
                self._values[key] = (self._clock() + (self._ttl if ttl is None else ttl), flight.value)
            return flight.value
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
