"""Deadlines and retries for every RPC the collector makes: which codes retry, how long to back off.

Policy (DESIGN difference 10): UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and CANCELLED are
retried with capped exponential backoff and jitter until a total budget runs out; any other code fails at
once. CANCELLED is what a db-manager being stopped (a rolling update) answers the calls it cuts short; like
DEADLINE_EXCEEDED the rows may or may not be stored, and resending is the safe side (`report.client`).
Each attempt has its own deadline, never longer than what is left of the budget.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc

__all__ = ["RETRYABLE_CODES", "CallFailed", "Clock", "RetryPolicy", "call_with_retry"]

RETRYABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED"})

# An attempt with less time than this left would only produce another DEADLINE_EXCEEDED.
_MIN_ATTEMPT_SECONDS = 0.05

T = TypeVar("T")


class Clock(Protocol):
    """The world a retry loop needs: a monotonic clock, a way to wait, and a source of jitter."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def random(self) -> float: ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.sleep`, `random.random`."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def random(self) -> float:
        return random.random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying (`budget`), how long one attempt may take, and the backoff curve."""

    budget: float = 300.0
    call_timeout: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.budget <= 0 or self.call_timeout <= 0:
            raise ValueError(
                f"retry budget and call timeout must be positive, got {self.budget}, {self.call_timeout}"
            )

    def backoff(self, failures: int, rand: float) -> float:
        """The pause after the `failures`-th failed attempt; `rand` in [0, 1) spreads it by ±jitter."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(max(failures - 1, 0), 64))
        return base * (1.0 + self.jitter * (2.0 * rand - 1.0))


class CallFailed(Exception):
    """An RPC failed for good: `code` is the gRPC code name, `gave_up` says the budget ran out."""

    def __init__(self, code: str, details: str, *, attempts: int, gave_up: bool) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        self.attempts = attempts
        self.gave_up = gave_up


def code_name(err: grpc.RpcError) -> tuple[str, str]:
    """The (code name, details) of a failed call; errors without a code count as UNKNOWN."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    return (code.name if code is not None else "UNKNOWN"), (details or "")


def call_with_retry(
    call: Callable[[float], T],
    *,
    policy: RetryPolicy,
    deadline: float,
    clock: Clock,
    on_retry: Callable[[str, float], None] | None = None,
) -> tuple[T, int]:
    """Run `call(timeout)` until it succeeds; returns its result and the number of attempts.

    `deadline` is on `clock.now()`'s scale and bounds the whole loop, so several calls can share one
    budget. Raises `CallFailed` on a non-retryable code, or when the next attempt would start too late.
    """
    failures, final = 0, False
    while True:
        remaining = deadline - clock.now()
        try:
            return call(min(policy.call_timeout, max(remaining, _MIN_ATTEMPT_SECONDS))), failures + 1
        except grpc.RpcError as err:
            code, details = code_name(err)
            failures += 1
            if code not in RETRYABLE_CODES:
                raise CallFailed(code, details, attempts=failures, gave_up=False) from err
            # The last pause is shortened so that one final attempt still fits in the budget.
            left = deadline - clock.now() - _MIN_ATTEMPT_SECONDS
            if final or left <= 0:
                raise CallFailed(code, details, attempts=failures, gave_up=True) from err
            pause = policy.backoff(failures, clock.random())
            final = pause >= left
            pause = min(pause, left)
            if on_retry is not None:
                on_retry(code, pause)
            clock.sleep(pause)
