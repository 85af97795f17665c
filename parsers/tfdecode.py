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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf.message import DecodeError

from katib_metrics.parsers._generated.katib_tfevent_pb2 import Event
from katib_metrics.parsers.tfruns import Run
from katib_metrics.parsers.tfvalues import NotAScalar, float32_text, float32_texts, tensor_text

__all__ = ["Decoded", "decode_records", "fast_match"]

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
_HIGH: Final = bytes(range(0x80, 0x100))
_LOW: Final = bytes(range(0x80))

NamesFor = Callable[[str], tuple[str, ...]]


@dataclass(slots=True)
class Decoded:
    """The wanted values, in record order: `names` has one entry per value.

    `raw_walls` are little-endian doubles; `values` are either little-endian float32 bytes (fast
    path) or finished text (protobuf path). An entry of bytes holds one value, or every value of a
    run read by columns. `bad_events` are (record index, reason)
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
        texts: list[str] = []
        for value in self.values:
            if isinstance(value, str):
                texts.append(value)
            elif len(value) == 4:
                texts.append(float32_text(_FLOAT.unpack(value)[0]))
            else:
                texts += float32_texts(_little_endian("f", value).tolist())
        return texts


def _little_endian(typecode: str, data: bytes) -> array[float]:
    numbers: array[float] = array(typecode, data)  # typecode "d" or "f"
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


def decode_records(
    records: list[bytes], known: dict[str, tuple[str, ...]], names_for: NamesFor,
    buf: bytes = b"", runs: Sequence[tuple[int, Run]] = (),
) -> Decoded:
    """Decode `records`; `known` maps tags already seen to their names, `names_for` resolves new ones.

    `runs` (from `parsers.tfrecord.Scan`, with the `buf` it scanned) are read by columns where their
    layout allows it (`parsers.tfruns`), record by record otherwise.
    """
    out = Decoded(events=len(records))
    by_bytes: dict[bytes, tuple[str, ...]] = {}

    def names_of(tag: bytes) -> tuple[str, ...] | None:
        names = by_bytes.get(tag)
        if names is None:
            try:
                tag_text = tag.decode()
            except UnicodeDecodeError:
                return None  # the protobuf path says why
            names = by_bytes[tag] = known.get(tag_text) or names_for(tag_text)
        return names

    done = 0
    for first, run in runs:
        _decode_each(records, done, first, out, known, names_for, names_of, by_bytes)
        done = first + run.records
        if not _decode_run(buf, run, records[first : first + len(run.lengths)], out, names_of):
            _decode_each(records, first, done, out, known, names_for, names_of, by_bytes)
    _decode_each(records, done, len(records), out, known, names_for, names_of, by_bytes)
    return out


def fast_match(data: bytes) -> re.Match[bytes] | None:
    """The fast path's match of one record, when its length fields allow no other protobuf reading.

    Groups: wall time, summary / value / tag lengths, tag, the float32 value (then the tensor
    layout's metadata length and metadata).
    """
    match = _SIMPLE.fullmatch(data) if data[-5:-4] == b"\x15" else None
    if match is not None:
        _, summary_len, value_len, tag_len, tag, _ = match.groups()
        ok = summary_len[0] - 2 == value_len[0] == tag_len[0] + 7 == len(tag) + 7
    else:
        match = _TENSOR.fullmatch(data)
        if match is None:
            return None
        _, summary_len, value_len, tag_len, tag, _, meta_len, meta = match.groups()
        tail = 0 if meta_len is None else 2 + len(meta)
        ok = summary_len[0] - 2 == value_len[0] == tag_len[0] + _TENSOR_FIXED + tail == len(
            tag
        ) + _TENSOR_FIXED + tail and (meta_len is None or meta_len[0] == len(meta))
    return match if ok else None


def _decode_each(
    records: list[bytes], start: int, stop: int, out: Decoded, known: dict[str, tuple[str, ...]],
    names_for: NamesFor, names_of: Callable[[bytes], tuple[str, ...] | None], by_bytes: dict[bytes, tuple[str, ...]],
) -> None:
    """Decode `records[start:stop]` one at a time into `out` (`by_bytes` caches `names_of`)."""
    walls, names_out, values = out.raw_walls, out.names, out.values
    simple, tensor, cached = _SIMPLE.fullmatch, _TENSOR.fullmatch, by_bytes.get
    for index in range(start, stop):  # the hot loop: `fast_match` inlined, locals only (a call costs 10%)
        data = records[index]
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
        if ok:
            names = cached(tag)
            if names is None:
                names = names_of(tag)
            if names:
                walls.append(wall)
                names_out.append(names)
                values.append(number)
                continue
            if names is not None:
                continue  # a tag nobody asked for
        _decode_slow(data, index, out, known, names_for)


def _decode_run(
    buf: bytes, run: Run, block: list[bytes], out: Decoded, names_of: Callable[[bytes], tuple[str, ...] | None],
) -> bool:
    """Decode every record of `run` by columns, if its first `block` shows one layout that never changes."""
    walls, values, names, varying = [], [], [], []
    for data, start in zip(block, run.data_starts(), strict=True):
        match = fast_match(data)
        record_names = None if match is None else names_of(match.group(5))
        if match is None or record_names is None:
            return False
        step = range(match.end(1) + 1, match.start(2) - 1)  # the step's varint bytes, after its key
        for offset in step:  # continuation bit set on all but the last byte: a varint of the same length
            if run.column(buf, start + offset).translate(None, _HIGH if offset < step[-1] else _LOW):
                return False
        footer = range(len(data), len(data) + 4)  # the data CRC, checked while framing
        varying += [start + offset for span in (range(*match.span(1)), range(*match.span(6)), step, footer)
                    for offset in span]
        if record_names:
            walls.append(start + match.start(1))
            values.append(start + match.start(6))
            names.append(record_names)
    if not run.constant_but(buf, varying):
        return False
    if names:
        out.raw_walls.append(run.gather(buf, walls, 8))
        out.values.append(run.gather(buf, values, 4))
        out.names += names * run.blocks
    return True


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
