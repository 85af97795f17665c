"""Value text of TensorFlow summaries: the exact number a scalar or one-element tensor holds (pure).

Part of event-file reading (`parsers.tfevent` calls it per value). Every numeric dtype is read, from
the typed value fields or from `tensor_content`, and written as the shortest text that round-trips
at the dtype's precision (DESIGN "Number text"): float32 `0.1` → `"0.1"`, float64 as Python's repr,
integers in full, float16 / bfloat16 / float8 from their exact value.

Takes the generated TensorProto message duck-typed (attributes only), so it imports no protobuf.
"""

from __future__ import annotations

import math
import operator
import struct
from array import array
from collections.abc import Callable, Sequence
from itertools import compress
from typing import Any, Final

from katib_metrics.parsers.numbers import format_float32, format_number

__all__ = ["NotAScalar", "float32_text", "float32_texts", "minifloat_text", "tensor_text"]

_F32: Final = struct.Struct("<f")
_INF: Final = math.inf


class NotAScalar(ValueError):
    """The summary value holds no single number; the message says why (used as the skip detail)."""


def float32_text(value: float) -> str:
    """Same text as `parsers.numbers.format_float32`, about 4x faster on typical values.

    The shortest round-tripping digit count is found by starting at 7 digits (where most float32
    values land) and walking down or up. That is exact because, away from powers of two, the set of
    decimals that round to a float32 is symmetric around it: if d digits round-trip, so do d + 1.
    Powers of two (asymmetric interval), zeros and non-finite values take the plain search.
    """
    pack = _F32.pack
    target = pack(value)
    if not value or value != value or value in (_INF, -_INF) or not _mantissa(target):
        return _float32_search(value)
    try:
        text = f"{value:.7g}"
        if pack(float(text)) == target:
            for digits in (6, 5, 4, 3, 2, 1):
                shorter = f"{value:.{digits}g}"
                if pack(float(shorter)) != target:
                    break
                text = shorter
        else:
            text = f"{value:.8g}"
            if pack(float(text)) != target:
                text = f"{value:.9g}"
    except OverflowError:  # a candidate beyond float32's range, next to its largest finite value
        return _float32_search(value)
    return _trim(text) if "e+" in text else text


def float32_texts(values: Sequence[float]) -> list[str]:
    """`float32_text` of each value, for a batch: every step is one C-level pass over the batch.

    The same digit-count walk as `float32_text` (7 digits, then down or up), but each round formats,
    parses and compares all pending values at once. Values the walk does not cover (zeros,
    powers of two, non-finite) go through `float32_text` one by one.
    """
    count = len(values)
    if count < 16:
        return list(map(float32_text, values))
    targets = array("f", values)
    bits = array("I", targets.tobytes())
    special = set(compress(range(count), map(operator.not_, map((0x7FFFFF).__and__, bits))))
    special.update(compress(range(count), map((0x7F800000).__eq__, map((0x7F800000).__and__, bits))))
    chosen: list[str] = [""] * count
    pending = [index for index in range(count) if index not in special] if special else list(range(count))
    passed, failed = _round_trip(values, targets, pending, 7, chosen)
    for digits in (6, 5, 4, 3, 2, 1):
        if not passed:
            break
        passed, _ = _round_trip(values, targets, passed, digits, chosen)
    for digits in (8, 9):
        if not failed:
            break
        _, failed = _round_trip(values, targets, failed, digits, chosen)
    if special:
        for index in special:
            chosen[index] = float32_text(values[index])
    if "e+" in "".join(chosen):
        return [_trim(text) if "e+" in text else text for text in chosen]
    return chosen


def _trim(text: str) -> str:
    """`%g` text → Python's repr style (`1e+08` → `100000000`); the two differ only for `e+`."""
    short = repr(float(text))
    return short[:-2] if short.endswith(".0") else short


def _round_trip(
    values: Sequence[float], targets: array[float], indexes: list[int], digits: int, chosen: list[str]
) -> tuple[list[int], list[int]]:
    """Format `values[indexes]` with `digits` significant digits; keep the texts that round-trip.

    Returns the indexes whose text round-tripped (recorded in `chosen`) and those whose did not.
    """
    if not indexes:
        return [], []
    pick = operator.itemgetter(*indexes)
    subset = pick(values) if len(indexes) > 1 else (values[indexes[0]],)
    texts = (f"%.{digits}g\0" * len(subset) % subset).split("\0")
    texts.pop()
    wanted = pick(targets) if len(indexes) > 1 else (targets[indexes[0]],)
    same = list(map(operator.eq, array("f", map(float, texts)), wanted))
    passed = list(compress(indexes, same))
    for index, text in zip(passed, compress(texts, same), strict=True):
        chosen[index] = text
    failed = list(compress(indexes, map(operator.not_, same)))
    return passed, failed


def _float32_search(value: float) -> str:
    """The plain ascending search, as `format_float32`, where a candidate may overflow float32."""
    try:
        return format_float32(value)
    except OverflowError:
        pass
    target = _F32.pack(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if _F32.pack(float(text)) == target:
                return format_number(float(text))
        except OverflowError:
            continue
    return format_number(value)


def _mantissa(float32: bytes) -> int:
    return int.from_bytes(float32, "little") & 0x7FFFFF


def _minifloat(bits: int, exp_bits: int, man_bits: int, finite_only: bool) -> float:
    """The exact value of an unsigned small-float bit pattern (IEEE-like, bias 2^(e-1) - 1).

    `finite_only` is the `fn` family (float8 e4m3fn): no infinities, only all-ones is NaN.
    """
    exp_max = (1 << exp_bits) - 1
    man_max = (1 << man_bits) - 1
    exponent = bits >> man_bits & exp_max
    mantissa = bits & man_max
    bias = (1 << (exp_bits - 1)) - 1
    if exponent == exp_max and (not finite_only or mantissa == man_max):
        return math.nan if mantissa else _INF
    if exponent == 0:
        return math.ldexp(mantissa, 1 - bias - man_bits)
    return math.ldexp(mantissa | (1 << man_bits), exponent - bias - man_bits)


def minifloat_text(bits: int, exp_bits: int, man_bits: int, finite_only: bool = False) -> str:
    """Shortest text that rounds back (to nearest, ties to even) to this 1+e+m bit float pattern."""
    sign_bit = 1 << (exp_bits + man_bits)
    sign = "-" if bits & sign_bit else ""
    magnitude = bits & (sign_bit - 1)
    value = _minifloat(magnitude, exp_bits, man_bits, finite_only)
    if value == 0 or not math.isfinite(value):
        return format_number(-value if sign else value) if not math.isnan(value) else "NaN"
    below = _minifloat(magnitude - 1, exp_bits, man_bits, finite_only)
    above = _minifloat(magnitude + 1, exp_bits, man_bits, finite_only)
    if not math.isfinite(above):
        above = value + (value - below)  # rounding to the largest finite value ends half an ulp above
    low, high = (below + value) / 2, (value + above) / 2
    ties_here = magnitude % 2 == 0
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if low < candidate < high or (ties_here and candidate in (low, high)):
            return sign + format_number(candidate)
    return sign + format_number(value)  # unreachable: 17 digits name any double exactly


def _wrap(bits: int, signed: bool) -> Callable[[int], str]:
    """Integer text for a dtype carried in a wider field, reduced to the dtype's width as TF does."""
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)

    def text(value: int) -> str:
        value &= mask
        return str(value - (1 << bits) if signed and value >= half else value)

    return text


# dtype numbers from tensorflow/core/framework/types.proto
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8 = 1, 2, 3, 4, 5, 6
DT_INT64, DT_QINT8, DT_QUINT8, DT_QINT32, DT_BFLOAT16 = 9, 11, 12, 13, 14
DT_QINT16, DT_QUINT16, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 15, 16, 17, 19, 22, 23
DT_FLOAT8_E5M2, DT_FLOAT8_E4M3FN = 24, 25


def _half(bits: int) -> str:
    return minifloat_text(bits & 0xFFFF, 5, 10)


def _bfloat16(bits: int) -> str:
    return minifloat_text(bits & 0xFFFF, 8, 7)


def _e5m2(bits: int) -> str:
    return minifloat_text(bits & 0xFF, 5, 2)


def _e4m3fn(bits: int) -> str:
    return minifloat_text(bits & 0xFF, 4, 3, finite_only=True)


def _text_of_int(value: int) -> str:
    return str(value)


_Reader = tuple[str, Callable[[Any], str]]
# dtype → (typed value field, text of one element); the "int_val" types are widened into int32.
_TYPED: Final[dict[int, _Reader]] = {
    DT_FLOAT: ("float_val", float32_text),
    DT_DOUBLE: ("double_val", format_number),
    DT_INT32: ("int_val", _wrap(32, True)),
    DT_QINT32: ("int_val", _wrap(32, True)),
    DT_INT16: ("int_val", _wrap(16, True)),
    DT_QINT16: ("int_val", _wrap(16, True)),
    DT_INT8: ("int_val", _wrap(8, True)),
    DT_QINT8: ("int_val", _wrap(8, True)),
    DT_UINT8: ("int_val", _wrap(8, False)),
    DT_QUINT8: ("int_val", _wrap(8, False)),
    DT_UINT16: ("int_val", _wrap(16, False)),
    DT_QUINT16: ("int_val", _wrap(16, False)),
    DT_INT64: ("int64_val", _text_of_int),
    DT_UINT32: ("uint32_val", _text_of_int),
    DT_UINT64: ("uint64_val", _text_of_int),
    DT_HALF: ("half_val", _half),
    DT_BFLOAT16: ("half_val", _bfloat16),
    DT_FLOAT8_E5M2: ("float8_val", _e5m2),
    DT_FLOAT8_E4M3FN: ("float8_val", _e4m3fn),
}
# dtype → (struct format of one little-endian element in tensor_content, text of it)
_CONTENT: Final[dict[int, tuple[struct.Struct, Callable[[Any], str]]]] = {
    DT_FLOAT: (struct.Struct("<f"), float32_text),
    DT_DOUBLE: (struct.Struct("<d"), format_number),
    DT_INT32: (struct.Struct("<i"), _text_of_int),
    DT_QINT32: (struct.Struct("<i"), _text_of_int),
    DT_INT16: (struct.Struct("<h"), _text_of_int),
    DT_QINT16: (struct.Struct("<h"), _text_of_int),
    DT_INT8: (struct.Struct("<b"), _text_of_int),
    DT_QINT8: (struct.Struct("<b"), _text_of_int),
    DT_UINT8: (struct.Struct("<B"), _text_of_int),
    DT_QUINT8: (struct.Struct("<B"), _text_of_int),
    DT_UINT16: (struct.Struct("<H"), _text_of_int),
    DT_QUINT16: (struct.Struct("<H"), _text_of_int),
    DT_INT64: (struct.Struct("<q"), _text_of_int),
    DT_UINT32: (struct.Struct("<I"), _text_of_int),
    DT_UINT64: (struct.Struct("<Q"), _text_of_int),
    DT_HALF: (struct.Struct("<H"), _half),
    DT_BFLOAT16: (struct.Struct("<H"), _bfloat16),
    DT_FLOAT8_E5M2: (struct.Struct("<B"), _e5m2),
    DT_FLOAT8_E4M3FN: (struct.Struct("<B"), _e4m3fn),
}


def _element_count(tensor: Any) -> int:
    shape = tensor.tensor_shape
    if shape.unknown_rank:
        raise NotAScalar("tensor of unknown rank")
    return math.prod(dim.size for dim in shape.dim)


def tensor_text(tensor: Any) -> str:
    """The text of the one number a TensorProto holds; NotAScalar when it holds anything else."""
    dtype = tensor.dtype
    reader = _TYPED.get(dtype)
    if reader is None:
        raise NotAScalar(f"tensor of non-numeric dtype {dtype}")
    count = _element_count(tensor)
    if count != 1:
        raise NotAScalar(f"tensor with {count} elements, not a scalar")
    content: bytes = tensor.tensor_content
    if content:
        element, text = _CONTENT[dtype]
        if len(content) != element.size:
            raise NotAScalar(f"tensor_content of {len(content)} bytes for one {element.size}-byte element")
        return text(element.unpack(content)[0])
    field, text = reader
    values: Sequence[Any] | bytes = getattr(tensor, field)
    if not values:
        raise NotAScalar("tensor without a value")
    return text(values[0])
