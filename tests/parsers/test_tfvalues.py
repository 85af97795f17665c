"""Number text of event values: shortest text that rounds back at the stored precision, every pattern."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.numbers import format_float32
from katib_metrics.parsers.tfvalues import float32_text, minifloat_text


def _float32(bits: int) -> float:
    return float(struct.unpack("<f", bits.to_bytes(4, "little"))[0])


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_the_fast_float32_text_is_the_shared_one(bits: int) -> None:
    value = _float32(bits)
    assert float32_text(value) == _shared(value)


def _shared(value: float) -> str:
    try:
        return format_float32(value)
    except OverflowError:  # the shared helper's search can step past float32's largest value
        return "overflow"


def test_the_fast_float32_text_is_the_shared_one_on_a_sweep_of_patterns() -> None:
    # Every exponent, mantissas spread over the range, including both ends of each binade.
    for bits in [*range(0, 2**32, 2**32 // 20011), *(e << 23 | m for e in range(256) for m in (1, 2**23 - 1))]:
        value = _float32(bits)
        assert _shared(value) in (float32_text(value), "overflow"), hex(bits)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1, "0.1"), (1 / 3, "0.33333334"), (1.0, "1"), (2.0**-20, "9.536743e-07"), (1e8, "100000000"),
     (-0.0, "-0"), (math.inf, "+Inf"), (math.nan, "NaN"), (16777216.0, "16777216"),
     (3.4028234663852886e38, "3.4028235e+38")],
)  # fmt: skip
def test_float32_text_examples(value: float, text: str) -> None:
    assert float32_text(_float32(int.from_bytes(struct.pack("<f", value), "little"))) == text


def _shorter_also_rounds_back(text: str, rounds_back: object) -> bool:
    mantissa = text.lstrip("-").split("e")[0].replace(".", "").strip("0")
    digits = len(mantissa)
    if digits <= 1:
        return False
    value = float(text)
    return bool(rounds_back(float(f"{value:.{digits - 1}g}")))  # type: ignore[operator]


def test_every_float16_pattern_round_trips_with_the_fewest_digits() -> None:
    for bits in range(1 << 16):
        exact = struct.unpack("<e", bits.to_bytes(2, "little"))[0]
        text = minifloat_text(bits, 5, 10)
        if math.isnan(exact):
            assert text == "NaN"
            continue
        assert struct.pack("<e", float(text)) == bits.to_bytes(2, "little"), (hex(bits), text)

        def same(candidate: float, bits: int = bits) -> bool:
            try:
                return struct.pack("<e", candidate) == bits.to_bytes(2, "little")
            except OverflowError:
                return False

        if math.isfinite(exact) and exact != 0:
            assert not _shorter_also_rounds_back(text, same), (hex(bits), text)


def _bfloat16_round(value: float) -> int:
    """Round a double to bfloat16 bits, nearest-even, via exact integer arithmetic on float32 bits."""
    (bits32,) = struct.unpack("<I", struct.pack("<f", value))  # exact for every text we check here
    upper, lower = bits32 >> 16, bits32 & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return int(upper)


def test_every_finite_bfloat16_pattern_round_trips() -> None:
    for bits in range(1 << 16):
        exact = _float32(bits << 16)
        text = minifloat_text(bits, 8, 7)
        if math.isnan(exact):
            assert text == "NaN"
        elif math.isinf(exact):
            assert text == ("+Inf" if exact > 0 else "-Inf")
        else:
            assert float(text) == exact or _bfloat16_round(float(text)) == bits, (hex(bits), text)


@pytest.mark.parametrize(
    ("bits", "exp_bits", "man_bits", "finite_only", "text"),
    [
        (0x3C, 5, 2, False, "1"),  # float8 e5m2 1.0
        (0x7C, 5, 2, False, "+Inf"),
        (0x38, 4, 3, True, "1"),  # float8 e4m3fn 1.0
        (0x7F, 4, 3, True, "NaN"),
        (0x01, 4, 3, True, "0.002"),  # smallest subnormal 2^-9 = 0.001953125
        (0xB8, 4, 3, True, "-1"),
    ],
)
def test_float8_examples(bits: int, exp_bits: int, man_bits: int, finite_only: bool, text: str) -> None:
    assert minifloat_text(bits, exp_bits, man_bits, finite_only) == text
