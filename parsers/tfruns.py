"""Runs of event records that repeat one block of records, read a byte column at a time.

A training loop logs the same scalars at every step, so between the steps where a varint grows a
byte, an event file repeats a block of one to `MAX_PERIOD` records whose bytes differ only in the
wall time, the step, the values and the data CRCs. Such a run is handled as columns: byte `i` of
every block is one strided slice of the buffer, so checking that a byte never changes, or gathering
every wall time, costs C work and no Python per record.

- `parsers.tfrecord` finds runs (`Run`) while framing: the block's headers must repeat byte for
  byte and every record's data CRC is still computed, one C call each, compared as one array;
- `parsers.tfdecode` decodes them: the first block's records go through its fast path, which gives
  their layout; every other byte must then never change and the step bytes must stay a valid
  varint, so every record has the same protobuf reading as the first block's.

Anything else is left to the per-record paths, which give the same answers
(tests/parsers/test_tfruns.py checks it against them).
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MAX_PERIOD", "MIN_BLOCKS", "Run", "block_period", "masks_match", "repeating_blocks"]

MAX_PERIOD: Final = 8
"""The most records in one repeating block (scalars logged per step, plus one)."""
MIN_BLOCKS: Final = 16
"""Shorter runs are not worth the column work: the per-record paths read them."""
_WINDOW: Final = 64  # blocks compared first; doubled while every compared byte keeps repeating
_OVERHEAD: Final = 16  # a record's header (12) and footer (4) bytes
_U32: Final = "I" if array("I").itemsize == 4 else "L"  # a C unsigned int: 4 bytes wherever CPython runs


@dataclass(frozen=True, slots=True)
class Run:
    """`blocks` consecutive blocks of records with data lengths `lengths`, from buffer offset `start`."""

    start: int
    lengths: tuple[int, ...]
    blocks: int
    stride: int = field(init=False)  # bytes of one block
    end: int = field(init=False)

    def __post_init__(self) -> None:
        stride = sum(self.lengths) + _OVERHEAD * len(self.lengths)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "end", self.start + self.blocks * stride)

    @property
    def records(self) -> int:
        return self.blocks * len(self.lengths)

    def data_starts(self) -> list[int]:
        """Where each record's data starts, from the start of its block."""
        starts, at = [], 0
        for length in self.lengths:
            starts.append(at + _OVERHEAD - 4)
            at += length + _OVERHEAD
        return starts

    def column(self, buf: bytes, offset: int) -> bytes:
        """Byte `offset` (from a block's start) of every block."""
        return buf[self.start + offset : self.end : self.stride]

    def constant_but(self, buf: bytes, varying: list[int]) -> bool:
        """Whether every block has the first block's bytes, except at the `varying` offsets."""
        blocks = bytearray(buf[self.start : self.end])
        zeros = bytes(self.blocks)
        for offset in varying:
            blocks[offset :: self.stride] = zeros
        return blocks == blocks[: self.stride] * self.blocks

    def gather(self, buf: bytes, offsets: list[int], width: int) -> bytes:
        """The `width` bytes at each of `offsets` of every block, concatenated in record order."""
        per_block = width * len(offsets)
        out = bytearray(per_block * self.blocks)
        for index, offset in enumerate(offsets):
            for byte in range(width):
                out[index * width + byte :: per_block] = self.column(buf, offset + byte)
        return bytes(out)

    def slices(self, buf: bytes, offset: int, length: int) -> list[bytes]:
        """The `length` bytes at `offset` of every block (one object each, but no Python loop)."""
        first = self.start + offset
        return list(map(buf.__getitem__, map(slice, range(first, self.end, self.stride),
                                             range(first + length, self.end + length, self.stride))))


def masks_match(crcs: list[int] | array[int], stored: bytes, delta: int) -> bool:
    """Whether TFRecord's mask of every CRC in `crcs` equals the little-endian u32s of `stored`.

    All at once: each value sits in a 64-bit lane of one big integer, so the rotation's shifts and
    the added `delta` never carry into the next value.
    """
    computed = array(_U32, crcs)
    if sys.byteorder == "big":
        computed.byteswap()
    lanes, ones = _lanes(computed.tobytes()), int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * len(computed), "little")
    rotated = ((lanes >> 15) | (lanes << 17)) & ones
    return (rotated + ones // 0xFFFFFFFF * delta) & ones == _lanes(stored)


def _lanes(u32s: bytes) -> int:
    """Little-endian u32s, each widened to a u64, as one integer."""
    wide = bytearray(2 * len(u32s))
    for byte in range(4):
        wide[byte::8] = u32s[byte::4]
    return int.from_bytes(wide, "little")


def block_period(lengths: list[int]) -> tuple[int, ...] | None:
    """The shortest block that `lengths` (of consecutive records) repeats at least twice, if any."""
    for period in range(1, min(MAX_PERIOD, len(lengths) // 2) + 1):
        if all(lengths[index] == lengths[index + period] for index in range(len(lengths) - period)):
            return tuple(lengths[:period])
    return None


def repeating_blocks(buf: bytes, run: Run, offsets: list[int]) -> int:
    """How many blocks of `run`, from its first, have the first block's bytes at every one of `offsets`."""
    stride, done, window = run.stride, 0, _WINDOW
    while done < run.blocks:
        count = min(window, run.blocks - done)
        low = run.start + done * stride
        same = count
        for offset in offsets:
            column = buf[low + offset : low + count * stride : stride]
            same = min(same, count - len(column.lstrip(buf[run.start + offset : run.start + offset + 1])))
        if same < count:
            return done + same
        done += count
        window *= 2
    return done
