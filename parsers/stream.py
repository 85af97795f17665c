"""One-shot parsing of a whole byte stream (a metrics file, stdin): chunked, pre-filtered, bounded memory.

Equivalent to feeding every line to a `LineParser`, but for TEXT it looks for candidate lines with the
C-speed `bytes.find` over large chunks, so the framework noise that makes up most training logs is
counted without ever being decoded or matched. Memory is one chunk plus the longest line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from parsers.filters import DefaultFilter
from parsers.lines import LineParser, decode_line
from parsers.model import ZERO_TIME, MetricLog
from parsers.text import TextParser
from parsers.timestamps import line_timestamp

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
    if _DefaultFilterScan.applies(parser):
        yield from _DefaultFilterScan(parser, default_time).scan(_blocks(stream, chunk_size))
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


# Katib's default filter seen from a wanted name (see `DefaultFilter`): an occurrence of name N at p is
# a match exactly when the character before p is not a name character, the one after N is not a name
# character either, and `\s*=\s*value` follows. Nothing else can claim p first: N starts with a letter,
# `_` or `|`, which no value, no `=` and no space contains. The one case this cannot decide alone is a
# name character before p that may end a previous match (a digit or `-`, as in `loss=1-acc=2`): such
# lines go through the line-by-line path.
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_|-")
_MAY_END_A_MATCH = frozenset(b"0123456789-")
_TAIL = re.compile(rb"[\t\f\r ]*=[\t\f\r ]*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)")
_SAFE_NAME = re.compile(r"[A-Za-z_|][\w|-]*", re.ASCII)
_NUMERIC_FIRST = frozenset("0123456789eE-")


class _DefaultFilterScan:
    """Finds default-filter matches of wanted names in a whole block with C-speed searches."""

    def __init__(self, parser: TextParser, default_time: str) -> None:
        self.parser, self.default_time = parser, default_time
        self.names = [(name, name.encode()) for name in parser.spec.metric_names if _SAFE_NAME.fullmatch(name)]

    @staticmethod
    def applies(parser: TextParser) -> bool:
        names = parser.spec.metric_names
        return (
            bool(names) and not parser.spec.filters and isinstance(parser.filters[0], DefaultFilter)
            and all(name[:1] not in _NUMERIC_FIRST for name in names)
        )

    def scan(self, blocks: Iterator[bytes]) -> Iterator[MetricLog]:
        first_lineno = 1
        for block in blocks:
            lines_in_block = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            self.parser.stats.lines += lines_in_block
            yield from self._block(block, first_lineno)
            first_lineno += lines_in_block

    def _block(self, block: bytes, first_lineno: int) -> Iterator[MetricLog]:
        found, ambiguous = self._occurrences(block)
        lineno, counted_to = first_lineno, 0
        for start in sorted(found.keys() | ambiguous):
            lineno += block.count(b"\n", counted_to, start)
            counted_to = start
            end = block.find(b"\n", start)
            line = decode_line(block[start:] if end < 0 else block[start:end])
            if start in ambiguous:
                yield from self.parser.parse_candidate(line, lineno, self.default_time)
            else:
                yield from self._emit(line, lineno, sorted(found[start]))

    def _occurrences(self, block: bytes) -> tuple[dict[int, list[tuple[int, str, bytes]]], set[int]]:
        found: dict[int, list[tuple[int, str, bytes]]] = {}
        ambiguous: set[int] = set()
        size = len(block)
        for name, needle in self.names:
            at = block.find(needle)
            while at >= 0:
                end = at + len(needle)
                before = block[at - 1] if at else 10
                if before in _NAME_BYTES:
                    if before in _MAY_END_A_MATCH:
                        ambiguous.add(block.rfind(b"\n", 0, at) + 1)
                elif end >= size or block[end] not in _NAME_BYTES:
                    tail = _TAIL.match(block, end)
                    if tail is not None:
                        start = block.rfind(b"\n", 0, at) + 1
                        found.setdefault(start, []).append((at, name, tail.group(1)))
                at = block.find(needle, end)
        return found, ambiguous

    def _emit(self, line: str, lineno: int, matches: list[tuple[int, str, bytes]]) -> Iterator[MetricLog]:
        stamp = line_timestamp(line) or self.default_time
        for _, name, raw in matches:
            value = raw.decode("ascii")
            if self.parser.accept(name, value, lineno):
                yield MetricLog(stamp, name, value)
