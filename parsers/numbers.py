"""Number text as Katib's Go code reads it (`strconv.ParseFloat`) and writes it (shortest round trip)."""

from __future__ import annotations

import math
import re
import struct

__all__ = ["format_float32", "format_number", "is_go_float", "parse_go_float", "plain_floats"]

_DEC = r"(?:\d(?:_?\d)*)"
_HEX = r"(?:[0-9a-fA-F](?:_?[0-9a-fA-F])*)"
_GO_FLOAT = re.compile(
    rf"""[+-]?(?:
        (?:{_DEC}(?:\.(?:{_DEC})?)?|\.{_DEC})(?:[eE][+-]?{_DEC})?       # decimal
      | 0[xX]_?(?:{_HEX}(?:\.(?:{_HEX})?)?|\.{_HEX})[pP][+-]?{_DEC}    # hexadecimal: exponent required
      | (?i:inf|infinity)                                              # infinities may carry a sign
    )|(?i:nan)                                                         # NaN may not
    """,
    re.VERBOSE | re.ASCII,
)


# The common spellings, for which Python's float() and Go's ParseFloat agree but for range.
PLAIN_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_go_float(text: str) -> float | None:
    """The float Go's `strconv.ParseFloat(text, 64)` returns without error, else None.

    Differences from Python's `float()` that matter for Katib: no surrounding spaces, no
    non-ASCII digits, hex floats need a `p` exponent, `+nan` is invalid, and values beyond
    float64's range are errors rather than infinities.
    """
    if PLAIN_FLOAT.fullmatch(text):
        value = float(text)
        return None if math.isinf(value) else value
    if not _GO_FLOAT.fullmatch(text):
        return None
    plain = text.replace("_", "")
    body = plain.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        try:
            value = float.fromhex(plain)
        except OverflowError:
            return None
    else:
        value = float(plain)
    if math.isinf(value) and "n" not in body.lower():
        return None
    return value


_DECIMAL_BYTES = b"0123456789.eE+-"


def plain_floats(texts: list[str]) -> list[float] | None:
    """The floats of many texts at once when every one is a plain finite decimal (the common case), else None.

    On strings made only of digits, `.`, `e`, `E`, `+` and `-`, Python's float() and Go's ParseFloat accept
    exactly the same texts, but for Go's range error on overflow, checked apart. One C-level pass each."""
    if "".join(texts).encode("ascii", "replace").translate(None, _DECIMAL_BYTES):
        return None
    try:
        values = list(map(float, texts))
    except ValueError:
        return None
    return None if math.inf in values or -math.inf in values else values


def is_go_float(text: str) -> bool:
    return parse_go_float(text) is not None


def format_number(value: float | int) -> str:
    """Shortest text that round-trips a float64, with Python's trailing `.0` dropped (`1.0` → `1`)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def format_float32(value: float) -> str:
    """Shortest text that round-trips `value` at float32 precision (float32 0.1 → `0.1`)."""
    if math.isnan(value) or math.isinf(value):
        return format_number(value)
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            candidate = struct.pack("<f", float(text))
        except OverflowError:  # a short rounding of the largest float32 lies beyond float32's range
            continue
        if candidate == target:
            # repr() of the short decimal is never longer and names the same float32.
            return format_number(float(text))
    return format_number(value)
