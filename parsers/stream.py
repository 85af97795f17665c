"""Block parsing: many whole lines at once, for a one-shot file and for a live tail alike (bounded memory).

`BlockParser.parse_block` gives exactly what feeding each line of the block to the spec's `LineParser`
would give, but for TEXT it looks for candidate lines with C-speed `bytes.find` over the whole block, so
the framework noise that makes up most training logs is counted without ever being decoded or matched;
with Katib's default filter it finds the wanted `name=value` pairs directly (see `parsers.defaultscan`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from katib_metrics.parsers.defaultscan import DefaultFilterScan
from katib_metrics.parsers.lines import LineParser, decode_line
from katib_metrics.parsers.longline import WINDOW, LongLine
from katib_metrics.parsers.model import ZERO_TIME, MetricLog
from katib_metrics.parsers.text import TextParser

__all__ = ["BlockParser", "iter_blocks", "scan"]

CHUNK_SIZE = 1 << 20


def iter_blocks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE, max_line: int = WINDOW) -> Iterator[bytes]:
    """Runs of whole lines, one chunk or so each; a block without a final newline is a piece of a line
    longer than `max_line` (continued by the next block) or the input's unterminated last line."""
    carry = b""
    while chunk := stream.read(chunk_size):
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry += chunk
            if len(carry) >= max_line:  # a long line goes on in pieces: never held whole
                yield carry
                carry = b""
            continue
        yield carry + chunk[: cut + 1] if carry else chunk[: cut + 1]
        carry = chunk[cut + 1 :]
    if carry:
        yield carry


class BlockParser:
    """Parses blocks of whole lines with a `LineParser`; line numbers continue from block to block."""

    def __init__(self, parser: LineParser) -> None:
        self.parser = parser
        self.next_lineno = 1
        text = parser if isinstance(parser, TextParser) else None
        self._fast = DefaultFilterScan(text) if text is not None and DefaultFilterScan.applies(text) else None
        self._needles = tuple(n.encode() for n in text.needles) if text is not None else ()
        self._text = text
        self._open: LongLine | None = None  # a line whose newline has not come yet

    def parse_block(self, block: bytes, default_time: str = ZERO_TIME, *, more: bool = False) -> list[MetricLog]:
        """The MetricLogs of `block`. Its start continues an open line; an unterminated tail opens one, which
        `more` says the next block continues (a long line in pieces), else it ends here (`finish`)."""
        logs: list[MetricLog] = []
        if block and self._open is not None:
            end = block.find(b"\n")
            if end < 0:
                logs, block = self._open.feed(block), b""
            else:
                logs = self._open.feed(block[:end]) + self.finish()
                block = block[end + 1 :]
        if block:
            cut = block.rfind(b"\n") + 1
            if cut:
                logs += self._whole_lines(block[:cut] if cut < len(block) else block, default_time)
            if cut < len(block):
                self._open = LongLine(self.parser, self.next_lineno, default_time)
                self.next_lineno += 1
                logs += self._open.feed(block[cut:])
        if not more:
            logs += self.finish()
        return logs

    def finish(self) -> list[MetricLog]:
        """At the end of the input (or of the open line): the logs of the open line's rest."""
        line, self._open = self._open, None
        return line.finish() if line is not None else []

    def _whole_lines(self, block: bytes, default_time: str) -> list[MetricLog]:
        first = self.next_lineno
        count = block.count(b"\n")
        self.next_lineno += count
        if self._fast is not None:
            self.parser.stats.lines += count
            return self._fast.block(block, first, default_time)
        if self._text is not None and self._needles:
            self.parser.stats.lines += count
            return self._candidates(self._text, block, first, default_time)
        return self._every_line(block, first, default_time)

    def _candidates(self, parser: TextParser, block: bytes, first: int, default_time: str) -> list[MetricLog]:
        logs: list[MetricLog] = []
        lineno, counted_to = first, 0
        for start in _candidate_starts(block, self._needles):
            lineno += block.count(b"\n", counted_to, start)
            counted_to = start
            logs += parser.parse_candidate(decode_line(_line_at(block, start)), lineno, default_time)
        return logs

    def _every_line(self, block: bytes, first: int, default_time: str) -> list[MetricLog]:
        lines = block.split(b"\n")
        lines.pop()  # after the last newline
        logs: list[MetricLog] = []
        parse = self.parser.parse_line
        for lineno, raw in enumerate(lines, first):
            logs += parse(decode_line(raw), lineno, default_time)
        return logs


def scan(stream: BinaryIO, parser: LineParser, *, default_time: str = ZERO_TIME,
         chunk_size: int = CHUNK_SIZE) -> Iterator[list[MetricLog]]:
    """The MetricLogs of a whole stream, one list per block."""
    blocks = BlockParser(parser)
    for block in iter_blocks(stream, chunk_size):
        yield blocks.parse_block(block, default_time, more=True)
    yield blocks.finish()


def _line_at(block: bytes, start: int) -> bytes:
    end = block.find(b"\n", start)
    return block[start:] if end < 0 else block[start:end]


def _candidate_starts(block: bytes, needles: tuple[bytes, ...]) -> list[int]:
    """Start offsets of the lines of `block` that contain any needle, in order, without duplicates."""
    starts: set[int] = set()
    for needle in needles:
        at = block.find(needle)
        while at >= 0:
            starts.add(block.rfind(b"\n", 0, at) + 1)
            end = block.find(b"\n", at)
            if end < 0:
                break
            at = block.find(needle, end)
    return sorted(starts)
