"""TFRecord payloads → (wall time, names, value) of the wanted scalars: the decoding stage of tfevent.

Sits between `parsers.tfrecord` (framing) and `parsers.tfevent` (files, rows). Two paths give the
same answers:

- a fast path for the two layouts real writers produce for a scalar, one summary value per event:
  `simple_value` (tensorboardX, torch, TF1) and a float32 scalar tensor (tensorboard's writer, TF2),
  recognised by one compiled pattern each and accepted only when every length field agrees, so
  the bytes have exactly one protobuf reading;
- the protobuf path (our generated `Event` subset) for everything else: several values per event,
  other dtypes, multi-byte lengths, unknown fields.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf.message import DecodeError

from katib_metrics.parsers._generated.katib_tfevent_pb2 import Event
from katib_metrics.parsers.tfvalues import NotAScalar, float32_text, float32_texts, tensor_text

__all__ = ["Decoded", "decode_records"]

_STEP: Final = rb"(?:\x10[\x80-\xff]{0,9}[\x00-\x7f])?"  # optional varint step (absent when 0)
# Event{wall_time, step?, summary{value{tag, simple_value}}} with one-byte lengths.
_SIMPLE: Final = re.compile(
    rb"\x09(.{8})" + _STEP + rb"\x2a([\x00-\x7f])\x0a([\x00-\x7f])\x0a([\x00-\x7f])(.*)\x15(.{4})", re.S
)
# Event{wall_time, step?, summary{value{tag, tensor{DT_FLOAT, shape [], one float}, metadata?}}}.
_TENSOR: Final = re.compile(
    rb"\x09(.{8})" + _STEP + rb"\x2a([\x00-\x7f])\x0a([\x00-\x7f])\x0a([\x00-\x7f])(.*?)"
    rb"\x42\x0a\x08\x01\x12\x00[\x22\x2a]\x04(.{4})(?:\x4a([\x00-\x7f])(.*))?",
    re.S,
)
_TENSOR_FIXED: Final = 2 + 12  # tag's key and length bytes, the whole tensor field
_DOUBLE: Final = struct.Struct("<d")
_FLOAT: Final = struct.Struct("<f")

NamesFor = Callable[[str], tuple[str, ...]]


@dataclass(slots=True)
class Decoded:
    """Parallel lists, one entry per wanted value, in record order.

    `raw_walls` are little-endian doubles; `values` are either the 4 little-endian bytes of a
    float32 (fast path) or finished text (protobuf path). `bad_events` are (record index, reason)
    of records that are not Events; `not_scalars` are (record index, tag, reason) of wanted tags
    whose value is not one number.
    """

    raw_walls: list[bytes] = field(default_factory=list)
    names: list[tuple[str, ...]] = field(default_factory=list)
    values: list[bytes | str] = field(default_factory=list)
    events: int = 0
    bad_events: list[tuple[int, str]] = field(default_factory=list)
    not_scalars: list[tuple[int, str, str]] = field(default_factory=list)
    all_float32: bool = True  # no finished text among `values`: format them as one batch

    def wall_times(self) -> list[float]:
        return _little_endian("d", b"".join(self.raw_walls)).tolist()

    def floats(self) -> list[float]:
        """The values of an `all_float32` batch, as floats (exact: a float32 fits a float64)."""
        return _little_endian("f", b"".join(self.values)).tolist()  # type: ignore[arg-type]

    def texts(self) -> list[str]:
        """The value texts, in order."""
        if self.all_float32:
            return float32_texts(_little_endian("f", b"".join(self.values)).tolist())  # type: ignore[arg-type]
        return [value if isinstance(value, str) else float32_text(_FLOAT.unpack(value)[0]) for value in self.values]


def _little_endian(typecode: str, data: bytes) -> array[float]:
    numbers: array[float] = array(typecode, data)  # typecode "d" or "f"
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


def decode_records(records: list[bytes], known: dict[str, tuple[str, ...]], names_for: NamesFor) -> Decoded:
    """Decode `records`; `known` maps tags already seen to their names, `names_for` resolves new ones."""
    out = Decoded(events=len(records))
    walls, names_out, values = out.raw_walls, out.names, out.values
    simple, tensor = _SIMPLE.fullmatch, _TENSOR.fullmatch
    by_bytes: dict[bytes, tuple[str, ...]] = {}
    for index, data in enumerate(records):
        match = simple(data) if data[-5:-4] == b"\x15" else None
        if match is not None:
            wall, summary_len, value_len, tag_len, tag, number = match.groups()
            ok = summary_len[0] - 2 == value_len[0] == tag_len[0] + 7 == len(tag) + 7
        else:
            match = tensor(data)
            if match is None:
                ok = False
            else:
                wall, summary_len, value_len, tag_len, tag, number, meta_len, meta = match.groups()
                tail = 0 if meta_len is None else 2 + len(meta)
                ok = summary_len[0] - 2 == value_len[0] == tag_len[0] + _TENSOR_FIXED + tail == len(
                    tag
                ) + _TENSOR_FIXED + tail and (meta_len is None or meta_len[0] == len(meta))
        if not ok:
            _decode_slow(data, index, out, known, names_for)
            continue
        names = by_bytes.get(tag)
        if names is None:
            try:
                tag_text = tag.decode()
            except UnicodeDecodeError:
                _decode_slow(data, index, out, known, names_for)
                continue
            names = by_bytes[tag] = known.get(tag_text) or names_for(tag_text)
        if names:
            walls.append(wall)
            names_out.append(names)
            values.append(number)
    return out


def _decode_slow(data: bytes, index: int, out: Decoded, known: dict[str, tuple[str, ...]], names_for: NamesFor) -> None:
    """The protobuf path: any Event, any number of values, any dtype."""
    try:
        event = Event.FromString(data)
    except DecodeError as err:
        out.events -= 1
        out.bad_events.append((index, f"not a TensorFlow Event: {err}"))
        return
    for value in event.summary.value:
        tag = value.tag
        names = known.get(tag)
        if names is None:
            names = names_for(tag)
        if not names:
            continue
        try:
            text = _value_text(value)
        except NotAScalar as err:
            out.not_scalars.append((index, tag, str(err)))
            continue
        out.raw_walls.append(_DOUBLE.pack(event.wall_time))
        out.names.append(names)
        out.values.append(text)
        out.all_float32 = False


def _value_text(value: Any) -> str:
    """The text of one Summary.Value's number; NotAScalar when it holds no single number."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float32_text(value.simple_value)
    if kind == "tensor":
        return tensor_text(value.tensor)
    raise NotAScalar(f"a {kind or 'empty'} summary")
