"""What a file tail handed over at each byte offset, so that a changed file is not reported twice.

Policy (docs/live-collection.md, "A file that changes under the tail"): a line at the same byte offset
with the same bytes as the line last handed over at that offset is the same row, whichever way the file
got there (rewritten in place, truncated and written again, replaced by another file). Each line is
recorded as (offset, length, CRC-32) in three arrays (16 bytes a line, filled at C speed), up to
`limit` lines; lines beyond it, and lines longer than the tail's line bound (handed over in pieces),
are not recorded, so a change of the file makes them reported again.
"""

from __future__ import annotations

import operator
import zlib
from array import array
from bisect import bisect_left
from itertools import accumulate

__all__ = ["MAX_RECORDS", "Handed", "record_new", "split_lines"]

MAX_RECORDS = 131_072
"""2 MiB of records per set (the tail keeps two): files rewritten in place are small in practice, and a
long append-only log never needs them."""


class Handed:
    """The lines handed over, in offset order: `starts`, `lengths` (without the newline), `crcs`."""

    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self.limit = limit
        self.starts = array("Q")
        self.lengths = array("L")
        self.crcs = array("L")

    def __len__(self) -> int:
        return len(self.starts)

    def last_start(self) -> int:
        return self.starts[-1] if self.starts else -1

    def add_lines(self, lines: list[bytes], start: int) -> None:
        """Record `lines` (each followed by a newline in the file) laid end to end from offset `start`."""
        room = self.limit - len(self.starts)
        if room <= 0:
            return
        if len(lines) > room:
            lines = lines[:room]
        lengths = array("L", map(len, lines))
        # start of line i = start + (lengths before it) + i newlines: running sums plus a range, in C
        self.starts.extend(map(operator.add, accumulate(lengths, initial=start), range(len(lines))))
        self.lengths.extend(lengths)
        self.crcs.extend(map(zlib.crc32, lines))

    def add_line(self, line: bytes, start: int) -> None:
        self.add_lines([line], start)

    def holds(self, line: bytes, start: int) -> bool:
        """Whether exactly `line` was handed over at offset `start`."""
        at = bisect_left(self.starts, start)
        return (at < len(self.starts) and self.starts[at] == start and self.lengths[at] == len(line)
                and self.crcs[at] == zlib.crc32(line))

    def over(self, older: Handed, end: int) -> Handed:
        """These records, then those of `older` from offset `end` on: the last line handed at each offset."""
        merged = Handed(self.limit)
        merged.starts, merged.lengths, merged.crcs = self.starts, self.lengths, self.crcs
        at = bisect_left(older.starts, end)
        room = self.limit - len(self.starts)
        if room > 0 and at < len(older.starts):
            merged.starts = self.starts + older.starts[at : at + room]
            merged.lengths = self.lengths + older.lengths[at : at + room]
            merged.crcs = self.crcs + older.crcs[at : at + room]
        return merged


def split_lines(block: bytes) -> list[bytes]:
    """The lines of a block that ends with a newline, without their newlines."""
    lines = block.split(b"\n")
    lines.pop()
    return lines


def record_new(handed: Handed, base: Handed, block: bytes, start: int) -> tuple[bytes, int]:
    """Record the whole lines of `block` (from offset `start`) and keep those `base` does not hold.

    Returns the block to hand over and the number of lines left out as already handed over.
    """
    lines = split_lines(block)
    handed.add_lines(lines, start)
    if start > base.last_start():  # past everything handed over before the change: the fast path
        return block, 0
    kept: list[bytes] = []
    at = start
    for line in lines:
        if not base.holds(line, at):
            kept.append(line)
        at += len(line) + 1
    if len(kept) == len(lines):
        return block, 0
    return b"".join(line + b"\n" for line in kept), len(lines) - len(kept)
