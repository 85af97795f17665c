"""One-shot parsing of a whole byte stream (a metrics file, stdin): chunked, pre-filtered, bounded memory.

Equivalent to feeding every line to a `LineParser`, but for TEXT it looks for candidate lines with the
C-speed `bytes.find` over large chunks, so the framework noise that makes up most training logs is
counted without ever being decoded or matched. Memory is one chunk plus the longest line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from parsers.lines import LineParser, decode_line
from parsers.model import ZERO_TIME, MetricLog
from parsers.text import TextParser

__all__ = ["scan_lines", "scan_text"]

CHUNK_SIZE = 4 << 20


def _blocks(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """Runs of whole lines (each block ends with a newline, except perhaps the very last one)."""
    carry = b""
    while chunk := stream.read(chunk_size):
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry += chunk
            continue
        yield carry + chunk[: cut + 1] if carry else chunk[: cut + 1]
        carry = chunk[cut + 1 :]
    if carry:
        yield carry


def _candidate_starts(block: bytes, needles: tuple[bytes, ...]) -> list[int]:
    """Start offsets of the lines of `block` that contain any needle, in order, without duplicates."""
    starts: set[int] = set()
    for needle in needles:
        at = block.find(needle)
        while at >= 0:
            start = block.rfind(b"\n", 0, at) + 1
            starts.add(start)
            end = block.find(b"\n", at)
            if end < 0:
                break
            at = block.find(needle, end)
    return sorted(starts)


def scan_text(
    stream: BinaryIO, parser: TextParser, *, default_time: str = ZERO_TIME, chunk_size: int = CHUNK_SIZE
) -> Iterator[MetricLog]:
    """Every MetricLog of a TEXT stream, exactly as `parser.parse_line` would give line by line."""
    if not parser.needles:
        yield from scan_lines(stream, parser, default_time=default_time, chunk_size=chunk_size)
        return
    needles = tuple(needle.encode() for needle in parser.needles)
    first_lineno = 1
    for block in _blocks(stream, chunk_size):
        lines_in_block = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        parser.stats.lines += lines_in_block
        lineno, counted_to = first_lineno, 0
        for start in _candidate_starts(block, needles):
            lineno += block.count(b"\n", counted_to, start)
            counted_to = start
            end = block.find(b"\n", start)
            raw = block[start:] if end < 0 else block[start:end]
            yield from parser.parse_candidate(decode_line(raw), lineno, default_time)
        first_lineno += lines_in_block


def scan_lines(
    stream: BinaryIO, parser: LineParser, *, default_time: str = ZERO_TIME, chunk_size: int = CHUNK_SIZE
) -> Iterator[MetricLog]:
    """Line-by-line fallback for filters without a usable pre-filter."""
    lineno = 0
    for block in _blocks(stream, chunk_size):
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        for raw in lines:
            lineno += 1
            yield from parser.parse_line(decode_line(raw), lineno, default_time)
