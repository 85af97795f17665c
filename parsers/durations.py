"""Durations as our options accept them: Go's `time.ParseDuration` syntax (`1m30s`, `500ms`) or plain seconds."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_PLAIN = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str) -> float:
    """Seconds; ValueError naming the text when it is neither Go syntax nor a plain number."""
    body = text.strip()
    if _PLAIN.fullmatch(body):
        return float(body)
    sign = -1.0 if body.startswith("-") else 1.0
    rest = body[1:] if body[:1] in "+-" else body
    total, pos = 0.0, 0
    while pos < len(rest):
        part = _PART.match(rest, pos)
        if part is None:
            break
        total += float(part.group(1)) * _UNITS[part.group(2)]
        pos = part.end()
    if not rest or pos != len(rest) or not math.isfinite(total):
        raise ValueError(
            f"{text!r} is not a duration (use Go syntax like 1s, 500ms, 2m30s, or plain seconds)"
        )
    return sign * total
