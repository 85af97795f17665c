"""Block parsing: many whole lines at once, for a one-shot file and for a live tail alike (bounded memory).

`BlockParser.parse_block` gives exactly what feeding each line of the block to the spec's `LineParser`
would give, but for TEXT it looks for candidate lines with C-speed `bytes.find` over the whole block, so
the framework noise that makes up most training logs is counted without ever being decoded or matched;
with Katib's default filter it finds the wanted `name=value` pairs directly (see `_DefaultFilterScan`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import BinaryIO

from katib_metrics.parsers.filters import DefaultFilter
from katib_metrics.parsers.lines import LineParser, decode_line
from katib_metrics.parsers.longline import WINDOW, LongLine
from katib_metrics.parsers.model import ZERO_TIME, MetricLog
from katib_metrics.parsers.template import LineTemplate
from katib_metrics.parsers.text import TextParser
from katib_metrics.parsers.timestamps import line_timestamp

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
        self._fast = _DefaultFilterScan(text) if text is not None and _DefaultFilterScan.applies(text) else None
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


def _lines_holding(block: bytes, needle: bytes, first: int) -> bytes:
    """The lines of `block` that hold `needle` (found first at `first`), joined in order."""
    pieces: list[bytes] = []
    at, size = first, len(block)
    while at >= 0:
        start = block.rfind(b"\n", 0, at) + 1
        end = block.find(b"\n", at)
        end = size if end < 0 else end + 1
        pieces.append(block[start:end])
        at = block.find(needle, end) if end < size else -1
    return b"".join(pieces)


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


# Katib's default filter seen from a wanted name (see `DefaultFilter`): an occurrence of name N at p is
# a match exactly when the character before p is not a name character, the one after N is not a name
# character either, and `\s*=\s*value` follows. Nothing else can claim p first: N starts with a letter,
# `_` or `|`, which no value, no `=` and no space contains. The one case this cannot decide alone is a
# name character before p that may end a previous match (a digit or `-`, as in `loss=1-acc=2`): such
# lines go through the line-by-line path.
_TAIL = re.compile(rb"[\t\f\r ]*=[\t\f\r ]*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)")
_SAFE_NAME = re.compile(r"[A-Za-z_|][\w|-]*", re.ASCII)
_NUMERIC_FIRST = frozenset("0123456789eE-")

_JSON_START = re.compile(rb"[ \t]*\{")
_Found = dict[int, list[tuple[int, str, bytes]]]
_DENSE_PROBE = 64 << 10
_DENSITY_SAMPLE = 64 << 10


_INFINITIES = (math.inf, -math.inf)
_new_log = tuple.__new__


class _LineNumbers:
    """1-based line numbers of offsets in a block, counted incrementally and only when asked."""

    def __init__(self, block: bytes, first_lineno: int) -> None:
        self.block, self.lineno, self.counted_to = block, first_lineno, 0

    def at(self, offset: int) -> int:
        self.lineno += self.block.count(b"\n", self.counted_to, offset)
        self.counted_to = offset
        return self.lineno


class _DefaultFilterScan:
    """Finds default-filter matches of wanted names in a whole block with C-speed searches."""

    def __init__(self, parser: TextParser) -> None:
        self.parser = parser
        # Per name, a pattern anchored on the name that checks the character before it afterwards, plus one
        # for the undecidable case.
        self.patterns = [
            (
                name,
                raw,
                re.compile(rb"%s(?<![\w|-]%s)(?![\w|-])%s" % (re.escape(raw), re.escape(raw), _TAIL.pattern)),
                re.compile(rb"%s(?<=[0-9-]%s)(?![\w|-])" % (re.escape(raw), re.escape(raw))),
            )
            for name, raw in ((n, n.encode()) for n in parser.spec.metric_names if _SAFE_NAME.fullmatch(n))
        ]
        self.wanted = {name: raw for name, raw, _, _ in self.patterns}
        self.template: LineTemplate | None = None

    def _by_template(self, block: bytes, default_time: str) -> list[MetricLog] | None:
        """Blocks whose metric lines are all cut from one template (see `parsers.template`), else None.

        Dense blocks go through the template whole. Sparse ones first gather the lines holding the first wanted
        name; when those lines also hold every occurrence of the other names, only they go through it."""
        if not self.wanted:
            return None
        first_name = next(iter(self.wanted.values()))
        at = block.find(first_name)
        if at < 0:
            return None
        start = block.rfind(b"\n", 0, at) + 1
        if self.template is None or not self.template.regex.match(block, start):
            self.template = LineTemplate.learn(_line_at(block, start), self.wanted)
            if self.template is None:
                return None
        if block.count(first_name, 0, _DENSE_PROBE) * 4 < block.count(b"\n", 0, _DENSE_PROBE):
            lines = _lines_holding(block, first_name, at)
            if any(block.count(raw) != lines.count(raw) for raw in self.wanted.values() if raw != first_name):
                return None  # another name also stands on other lines: the exact path finds it
            block = lines
        return self.template.extract(block, self.wanted, default_time, self.parser.stats.values)

    @staticmethod
    def applies(parser: TextParser) -> bool:
        names = parser.spec.metric_names
        return (
            bool(names) and not parser.spec.filters and isinstance(parser.filters[0], DefaultFilter)
            and all(name[:1] not in _NUMERIC_FIRST for name in names)
        )

    def block(self, block: bytes, first_lineno: int, default_time: str) -> list[MetricLog]:
        dense = self._by_template(block, default_time)
        if dense is not None:
            return dense
        found, ambiguous = self._occurrences(block)
        logs: list[MetricLog] = []
        lines = _LineNumbers(block, first_lineno)  # counted only when a skip must name its line
        for start in sorted(found.keys() | ambiguous):
            line = decode_line(_line_at(block, start))
            if start in ambiguous:
                logs += self.parser.parse_candidate(line, lines.at(start), default_time)
            else:
                self._emit(logs, line, start, lines, found[start], default_time)
        return logs

    def _occurrences(self, block: bytes) -> tuple[_Found, set[int]]:
        found: _Found = {}
        ambiguous: set[int] = set()
        for name, raw, exact, unsure in self.patterns:
            # bytes.find skips through noise at memchr speed; the anchored patterns then judge each hit.
            at, start, looked = block.find(raw), 0, 0
            while at >= 0:
                # The line's start, searched back only to the previous hit: linear however many hits a line has.
                newline = block.rfind(b"\n", looked, at)
                start, looked = (newline + 1 if newline >= 0 else start), at
                match = exact.match(block, at)
                if match is not None:
                    found.setdefault(start, []).append((at, name, match.group(1)))
                elif unsure.match(block, at) is not None or _JSON_START.match(block, start) is not None:
                    ambiguous.add(start)  # undecidable here, or a JSON line (DESIGN difference 14)
                at = block.find(raw, at + len(raw))
        return found, ambiguous

    def _emit(self, logs: list[MetricLog], line: str, start: int, lines: _LineNumbers,
              matches: list[tuple[int, str, bytes]], default_time: str) -> None:
        stamp = line_timestamp(line) or default_time
        values = self.parser.stats.values
        if len(matches) > 1:
            matches.sort()
        for _, name, raw in matches:
            value = raw.decode("ascii")
            try:  # the value group's grammar: a number exactly when float() takes it and it is finite
                number = float(value)
            except ValueError:
                number = math.nan
            if number == number and number not in _INFINITIES:
                values[name] += 1
                logs.append(_new_log(MetricLog, (stamp, name, value)))
            else:
                self.parser.accept(name, value, lines.at(start))
