"""Dense logs: lines cut from one template (`<time> epoch=N loss=X acc=Y`) are matched in one C-speed pass.

Used by the block scanner for Katib's default filter. A template is learnt from one line: its default-filter
matches become literal names with value groups between the line's own literal separators, and everything
before the first match is a free "head" (the time stamp and any prefix, no `=`). Every line the template
matches yields exactly the matches Katib's filter finds (the module's property test compares the two):

- no filter match can hide in the head (every match holds `=`), nor straddle its end (the head ends with a
  character that cannot be part of a name);
- separators are the learnt line's own text, which held no match there, so it holds none anywhere;
- a separator never starts with a character a value could take, so the greedy value ends where Katib's does.

A block is taken this way only if the matched lines account for every occurrence of every wanted name in the
block (any other line that might hold one sends the whole block down the exact path), every wanted value is a
number (a skip must name its line), and every head's time stamp can be judged from the head alone.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import chain, repeat
from operator import itemgetter

from katib_metrics.parsers.filters import default_filter_spans
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.numbers import plain_floats
from katib_metrics.parsers.timestamps import all_go_rfc3339nano, line_timestamp

__all__ = ["MAX_LINE", "MAX_PAIRS", "LineTemplate"]

MAX_LINE = 4096
MAX_PAIRS = 64

# Katib's value group restricted to values with a mantissa digit: on those it matches the same text, and a line
# whose value is not a number does not fit the template, so its block goes the exact way (which names the line).
_VALUE = rb"([+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[Ee][+-]?\d+)?)"
_HEAD = rb"(?m)^((?:[^=\n]*[^=\n\w|-])?)"
_MAY_START_A_TIME = frozenset(b"0123456789[")
_NO_OVERFLOW = 300  # digits: a plain decimal this short cannot overflow float64
_TOKEN_HEAD = rb"(?m)^([^\s=]+ )"
_EMPTY_HEAD = rb"(?m)^()"
_TOKEN_HEAD_TEXT = re.compile(r"[^\s=]+ ", re.ASCII)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_|-")
_VALUE_CHARS = frozenset("0123456789.eE+-")
_new_log = tuple.__new__


class LineTemplate:
    """The shape of one line: literal text and names, with the values (and the head) left free."""

    def __init__(self, pattern: bytes, names: list[str], literals: list[bytes], wanted: dict[str, bytes]) -> None:
        self.regex = re.compile(pattern)
        self.names = names
        self.wanted_positions = [(index, name) for index, name in enumerate(names) if name in wanted]
        self.per_line = {name: sum(chunk.count(raw) for chunk in literals) for name, raw in wanted.items()}

    @classmethod
    def learn(cls, line: bytes, wanted: dict[str, bytes]) -> LineTemplate | None:
        """The template of `line`, or None when its shape does not allow one (or the line is too long for one:
        a template compiles a group per match, so a progress bar's megabyte line would cost gigabytes)."""
        if len(line) > MAX_LINE:
            return None
        text = line.decode("latin-1")  # one character per byte: spans are byte offsets
        spans = default_filter_spans(text)
        if not spans or len(spans) > MAX_PAIRS or not any(text[a:b] in wanted for a, b, _, _ in spans):
            return None
        head = text[: spans[0][0]]
        if "=" in head or head[-1:] in _NAME_CHARS:
            return None
        # No head, or a `<token> ` head (a time stamp, then the metrics): patterns that cannot backtrack.
        first = _EMPTY_HEAD if not head else _TOKEN_HEAD if _TOKEN_HEAD_TEXT.fullmatch(head) else _HEAD
        pattern, literals, names = [first], [], []
        for index, (name_start, name_end, value_start, value_end) in enumerate(spans):
            follow = text[value_end : spans[index + 1][0]] if index + 1 < len(spans) else text[value_end:]
            if follow[:1] in _VALUE_CHARS or (index + 1 < len(spans) and (not follow or follow[-1] in _NAME_CHARS)):
                return None
            literal = line[name_start:value_start]
            literals += [literal, line[value_end : value_end + len(follow)]]
            names.append(text[name_start:name_end])
            pattern += [re.escape(literal), _VALUE, re.escape(line[value_end : value_end + len(follow)])]
        pattern.append(rb"$")
        return cls(b"".join(pattern), names, literals, wanted)

    def extract(self, block: bytes, wanted: dict[str, bytes], default_time: str,
                values: Counter[str]) -> list[MetricLog] | None:
        """Every wanted MetricLog of `block`, or None when the block must take the exact path."""
        found = self.regex.findall(block)
        if not found or any(block.count(raw) != len(found) * self.per_line[name] for name, raw in wanted.items()):
            return None
        positions = self.wanted_positions
        columns = [list(map(bytes.decode, map(itemgetter(index + 1), found))) for index, _ in positions]
        every = list(chain.from_iterable(columns))
        joined = "".join(every)
        if ("e" in joined or "E" in joined or max(map(len, every)) > _NO_OVERFLOW) and plain_floats(every) is None:
            return None  # an exponent (or a huge number) may overflow float64, which Go rejects
        stamps = _stamps(list(map(itemgetter(0), found)), default_time)
        if stamps is None:
            return None
        per_column = [list(map(_new_log, repeat(MetricLog), zip(stamps, repeat(name), column)))
                      for (_, name), column in zip(positions, columns, strict=True)]
        for _, name in positions:
            values[name] += len(found)
        return per_column[0] if len(per_column) == 1 else list(chain.from_iterable(zip(*per_column, strict=True)))


def _stamps(heads: list[bytes], default_time: str) -> list[str] | None:
    """Each head's time stamp; None when one can only be judged from its whole line."""
    if not any(heads):
        return [default_time] * len(heads)  # lines that start with their metrics carry no time of their own
    tokens = _single_tokens(heads)
    if tokens is not None and all_go_rfc3339nano(tokens):
        return tokens  # Katib's rule on every line: the first token, verbatim
    stamps: list[str] = []
    for head in heads:
        if head and head[0] in _MAY_START_A_TIME and b" " not in head and b"\t" not in head:
            return None  # the line's first token runs past the head
        stamps.append(line_timestamp(head.decode("utf-8", "replace")) or default_time)
    return stamps


def _single_tokens(heads: list[bytes]) -> list[str] | None:
    """The tokens when every head is exactly `<token> ` (the common `<time> name=value ...` line), else None."""
    text = b"\n".join(heads).decode("utf-8", "replace") + "\n"
    if text.count(" ") != len(heads) or text.count(" \n") != len(heads):
        return None
    return text[:-2].split(" \n")
