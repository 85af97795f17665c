"""Katib's default filter over a whole block: wanted `name=value` pairs found with C-speed searches (pure).

Dense and sparse blocks alike go through `parsers.templates` first: the lines holding a wanted name (the whole
block when most lines do, else those lines gathered with `bytes.find`) are matched against the learnt line
shapes in one pass, and only the lines no shape fits are parsed one by one. A block the templates cannot
vouch for takes the exact path below, which judges every occurrence of a wanted name where it stands.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from katib_metrics.parsers.filters import DefaultFilter
from katib_metrics.parsers.lines import decode_line
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.templates import TemplateSet
from katib_metrics.parsers.text import TextParser
from katib_metrics.parsers.timestamps import line_timestamp

__all__ = ["DefaultFilterScan"]

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
_MAX_PAUSE = 64
_INFINITIES = (math.inf, -math.inf)
_new_log = tuple.__new__
Rows = list[MetricLog]


class _LineNumbers:
    """1-based line numbers of offsets in a text, counted incrementally and only when asked; `line_of` maps
    the text's own line numbers to the input's (gathered lines)."""

    def __init__(self, text: bytes, first_lineno: int, line_of: Callable[[int], int] | None = None) -> None:
        self.text, self.lineno, self.counted_to, self.line_of = text, first_lineno, 0, line_of

    def at(self, offset: int) -> int:
        self.lineno += self.text.count(b"\n", self.counted_to, offset)
        self.counted_to = offset
        return self.lineno if self.line_of is None else self.line_of(self.lineno)


class DefaultFilterScan:
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
        self.templates = TemplateSet(self.wanted) if self.wanted else None
        # Blocks the templates did not fit are followed by a few taken the exact way straight away (4, 8, ...
        # up to 64 while that goes on), so a log of unlearnable shapes pays for the templates' pass rarely.
        self._backoff = self._pause = 0

    @staticmethod
    def applies(parser: TextParser) -> bool:
        names = parser.spec.metric_names
        return (
            bool(names) and not parser.spec.filters and isinstance(parser.filters[0], DefaultFilter)
            and all(name[:1] not in _NUMERIC_FIRST for name in names)
        )

    def block(self, block: bytes, first_lineno: int, default_time: str) -> Rows:
        """The MetricLogs of `block` (whole lines, the first numbered `first_lineno`)."""
        rows = self._by_templates(block, first_lineno, default_time)
        if rows is not None:
            return rows
        return [row for _, rows_ in self._exact(block, _LineNumbers(block, first_lineno), default_time)
                for row in rows_]

    def _by_templates(self, block: bytes, first_lineno: int, default_time: str) -> Rows | None:
        if self.templates is None:
            return None
        if self._pause:
            self._pause -= 1
            return None
        probe = max(block.count(raw, 0, _DENSE_PROBE) for raw in self.wanted.values())
        if probe * 4 >= block.count(b"\n", 0, _DENSE_PROBE):
            text, starts = block, None
        else:  # sparse: only the lines holding a wanted name are matched
            text, starts = _gather(block, tuple(self.wanted.values()))
            if not text:
                return []
        numbers = _LineNumbers(block, first_lineno)
        gathered = _LineNumbers(text, 0)

        def lineno_at(offset: int) -> int:
            return numbers.at(offset if starts is None else starts[gathered.at(offset)])

        rows = self.templates.extract(text, default_time, self.parser.stats.values,
                                      lambda lines, line_of: self._odd(lines, line_of, default_time), lineno_at)
        if rows is not None:
            self._backoff = 0
        elif self.templates.odd_lines > sum(self.templates.used):
            self._backoff = min(2 * self._backoff or 4, _MAX_PAUSE)
            self._pause = self._backoff
        return rows

    def _odd(self, lines: list[bytes], line_of: Callable[[int], int], default_time: str) -> list[Rows]:
        """The exact rows of lines no template fits, one list per line."""
        text = b"\n".join(lines) + b"\n"
        per_line: list[Rows] = [[] for _ in lines]
        numbers = _LineNumbers(text, 0, line_of)
        index, counted_to = 0, 0
        for start, rows in self._exact(text, numbers, default_time):
            index += text.count(b"\n", counted_to, start)
            counted_to = start
            per_line[index] = rows
        return per_line

    def _exact(self, block: bytes, lines: _LineNumbers, default_time: str) -> list[tuple[int, Rows]]:
        """Each line holding a wanted name judged where it stands: (line start, its rows), in line order."""
        found, ambiguous = self._occurrences(block)
        out: list[tuple[int, Rows]] = []
        for start in sorted(found.keys() | ambiguous):
            line = decode_line(_line_at(block, start))
            if start in ambiguous:
                out.append((start, self.parser.parse_candidate(line, lines.at(start), default_time)))
            else:
                out.append((start, self._emit(line, start, lines, found[start], default_time)))
        return out

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

    def _emit(self, line: str, start: int, lines: _LineNumbers, matches: list[tuple[int, str, bytes]],
              default_time: str) -> Rows:
        stamp = line_timestamp(line) or default_time
        values = self.parser.stats.values
        if len(matches) > 1:
            matches.sort()
        logs: Rows = []
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
        return logs


def _line_at(block: bytes, start: int) -> bytes:
    end = block.find(b"\n", start)
    return block[start:] if end < 0 else block[start:end]


def _gather(block: bytes, needles: tuple[bytes, ...]) -> tuple[bytes, list[int]]:
    """The lines of `block` (whole lines) that hold any needle, joined in order, and where each one starts."""
    ends: dict[int, int] = {}
    for needle in needles:
        at = block.find(needle)
        while at >= 0:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.find(b"\n", at) + 1 or len(block)
            ends[start] = end
            at = block.find(needle, end)
    starts = sorted(ends)
    return b"".join([block[start : ends[start]] for start in starts]), starts
