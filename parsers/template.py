"""One learnt line shape (`<time> epoch=N loss=X acc=Y`): a regex whose matches yield exactly Katib's matches.

Used by `parsers.templates` for Katib's default filter. A template is learnt from one line: its default-filter
matches become literal names with value groups between the line's own literal separators, and everything
before the first match is a free "head" (the time stamp and any prefix, no `=`). Every line the template
matches yields exactly the matches Katib's filter finds (the module's property test compares the two):

- no filter match can hide in the head (every match holds `=`), nor straddle its end (the head ends with a
  character that cannot be part of a name);
- separators are the learnt line's own text, which held no match there, so it holds none anywhere;
- a separator never starts with a character a value could take, so the greedy value ends where Katib's does.

A head that is a Go RFC3339Nano token (Katib's own time stamp rule) is matched by a regex that accepts exactly
the tokens Go accepts, calendar included, so its time stamps need no second look; other heads are judged
by `head_stamps`. Only wanted values are captured.
"""

from __future__ import annotations

import re

from katib_metrics.parsers.filters import default_filter_spans
from katib_metrics.parsers.timestamps import all_go_rfc3339nano, is_go_rfc3339nano, line_timestamp

__all__ = ["MAX_LINE", "MAX_PAIRS", "RFC3339_TOKEN", "LineTemplate", "head_stamps"]

MAX_LINE = 4096
MAX_PAIRS = 64

# Katib's value group restricted to values with a mantissa digit: on those it matches the same text, and a line
# whose value is not a number does not fit the template (it is parsed line by line, which names it). Possessive
# throughout: a value is followed by a literal that cannot start with a value character, so the value is the
# whole run of value characters and giving any back never helps (and backtracking state costs a third).
# At most 300 integer digits: a plain decimal that short cannot overflow float64 (longer ones are parsed line by
# line, where Go's range error is found).
_NUMBER = rb"[+-]?+(?:\d{1,300}+(?:\.\d++)?+|\.\d++)(?:[Ee][+-]?+\d++)?+"
# Go's RFC3339Nano with the calendar spelt out (30-day months, February, leap years): what `is_go_rfc3339nano`
# accepts, as one regex (a test compares them on every date of 400 years).
_LEAP_YEAR = rb"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[048]|[2468][048]|[13579][26])00)"
_DATE = (rb"(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         rb"|02-(?:0[1-9]|1[0-9]|2[0-8]))|" + _LEAP_YEAR + rb"-02-29)")
RFC3339_TOKEN = (_DATE + rb"T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.,][0-9]+)?"
                 rb"(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))")
_RFC_HEAD = b"(" + RFC3339_TOKEN + b") "
_FREE_HEAD = rb"((?:[^=\n]*[^=\n\w|-])?)"
_TOKEN_HEAD = rb"([^\s=]+ )"
_NO_HEAD = rb"()"
_TOKEN_HEAD_TEXT = re.compile(r"([^\s=]+) ", re.ASCII)
_MAY_START_A_TIME = frozenset(b"0123456789[")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_|-")
_VALUE_CHARS = frozenset("0123456789.eE+-")


class LineTemplate:
    """The shape of one line: literal text and names, with the values (and the head) left free.

    `pattern` is the line's regex without its `^` anchor; its groups are the head, then one per wanted value
    (`wanted_names`, in line order). `rfc_head`: the head group is exactly a Go RFC3339Nano token."""

    def __init__(self, pattern: bytes, names: list[str], literals: list[bytes], wanted: dict[str, bytes],
                 rfc_head: bool) -> None:
        self.pattern = pattern
        self.regex = re.compile(b"(?m)^" + pattern)
        self.names = names
        self.wanted_names = [name for name in names if name in wanted]
        self.per_line = {name: sum(chunk.count(raw) for chunk in literals) for name, raw in wanted.items()}
        self.rfc_head = rfc_head
        self.groups = 1 + len(self.wanted_names)

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
        token = _TOKEN_HEAD_TEXT.fullmatch(head)
        rfc_head = token is not None and is_go_rfc3339nano(token.group(1))
        # Heads that cannot backtrack when they can: none, an RFC3339 token, any `<token> `.
        first = _NO_HEAD if not head else _RFC_HEAD if rfc_head else _TOKEN_HEAD if token else _FREE_HEAD
        pattern, literals, names = [first], [], []
        for index, (name_start, name_end, value_start, value_end) in enumerate(spans):
            follow = text[value_end : spans[index + 1][0]] if index + 1 < len(spans) else text[value_end:]
            if follow[:1] in _VALUE_CHARS or (index + 1 < len(spans) and (not follow or follow[-1] in _NAME_CHARS)):
                return None
            literal = line[name_start:value_start]
            after = line[value_end : value_end + len(follow)]
            literals += [literal, after]
            names.append(text[name_start:name_end])
            value = b"(%s)" % _NUMBER if names[-1] in wanted else b"(?:%s)" % _NUMBER
            pattern += [re.escape(literal), value, re.escape(after)]
        pattern.append(rb"$")
        template = cls(b"".join(pattern), names, literals, wanted, rfc_head)
        return template if template.regex.match(line) else None  # a value that is no number: no template


def head_stamps(heads: list[bytes], rfc_head: bool, default_time: str) -> list[str] | None:
    """Each head's time stamp; None when one can only be judged from its whole line."""
    if rfc_head:
        return b"\n".join(heads).decode("ascii").split("\n")  # Katib's rule: the token, verbatim
    if not any(heads):
        return [default_time] * len(heads)  # lines that start with their metrics carry no time of their own
    tokens = _single_tokens(heads)
    if tokens is not None and all_go_rfc3339nano(tokens):
        return tokens
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
