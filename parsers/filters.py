"""metricsFormat regexes: RE2-compatible validation, compilation and Go's FindAll matching, in bounded time.

Katib compiles each filter with Go's RE2 and takes `FindAllStringSubmatch(line, -1)`; group 1 is the
metric name and group 2 the value. Here a filter is validated once at start-up (compiles, has at least
two capture groups, uses no construct RE2 rejects) and every line's matching runs under a time budget,
so a pathological pattern costs one skipped line instead of a hung collector (DESIGN difference 6).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from katib_metrics.parsers.errors import FilterError
from katib_metrics.parsers.model import DEFAULT_FILTER

__all__ = [
    "DefaultFilter",
    "Filter",
    "FilterTimeout",
    "Match",
    "UserFilter",
    "compile_filters",
    "default_filter_spans",
    "split_katib_filters",
    "translate_re2",
]

# RE2's \s is [\t\n\f\r ]: unlike Python it excludes \v.
_RE2_SPACE = r"\t\n\f\r "
_UNSUPPORTED = (
    ("(?=", "lookahead"),
    ("(?!", "negative lookahead"),
    ("(?<=", "lookbehind"),
    ("(?<!", "negative lookbehind"),
    ("(?>", "atomic group"),
    ("(?P=", "named backreference"),
)


class FilterTimeout(Exception):
    """A line's matching ran out of its time budget."""


def split_katib_filters(text: str) -> tuple[str, ...]:
    """Katib's `-f` value: metricsFormat entries joined with `;` (so a `;` inside a regex cannot survive)."""
    return tuple(part for part in text.split(";") if part) if text else ()


def translate_re2(pattern: str) -> str:
    """Rewrite an RE2 pattern for Python's engine, or raise FilterError for what RE2 would reject."""
    for token, what in _UNSUPPORTED:
        if token in pattern:
            raise FilterError(pattern, f"{what} `{token}` is not supported by RE2 (Katib's regex engine)")
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(_translate_escape(pattern, pattern[i + 1], in_class))
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            # `[]` and `[^]` open a class whose first member is a literal `]`.
            lead = 2 if pattern.startswith("^]", i + 1) else 1 if pattern.startswith("]", i + 1) else 0
            out.append(pattern[i : i + 1 + lead])
            i += 1 + lead
            continue
        if char == "]" and in_class:
            in_class = False
        elif not in_class and char == "+" and out and out[-1] in ("*", "+", "?", "}"):
            raise FilterError(pattern, "possessive quantifiers are not supported by RE2")
        out.append(char)
        i += 1
    return "".join(out)


def _translate_escape(pattern: str, escaped: str, in_class: bool) -> str:
    if escaped == "s":
        return _RE2_SPACE if in_class else f"[{_RE2_SPACE}]"
    if escaped == "S":
        return f"[^{_RE2_SPACE}]" if not in_class else _not_supported(pattern, r"\S inside a class")
    if escaped == "z":
        return r"\Z"
    if escaped.isdigit() and escaped != "0":
        return _not_supported(pattern, f"backreference \\{escaped}")
    if escaped in "ZGbB" and in_class:
        return "\\" + escaped
    if escaped == "Z":
        return _not_supported(pattern, r"\Z (use \z or $)")
    return "\\" + escaped


def _not_supported(pattern: str, what: str) -> str:
    raise FilterError(pattern, f"{what} is not supported by RE2 (Katib's regex engine)")


class Filter(Protocol):
    """One compiled metricsFormat entry."""

    @property
    def pattern(self) -> str: ...

    def find_all(self, line: str, deadline: float) -> list[tuple[str, str]]:
        """(name, value) of every match in Go's FindAll order; FilterTimeout past `deadline`."""

    def scan(self, line: str, pos: int, prev_end: int, deadline: float) -> Iterator[Match]:
        """The matches of `find_all` from `pos` on (`prev_end`: where the previous match ended), with spans."""


class Match(NamedTuple):
    """One filter match: its span in the line, the (name, value) it captured, and where the value ended."""

    start: int
    end: int
    name: str
    value: str
    value_end: int


@dataclass(frozen=True, slots=True)
class UserFilter:
    """A user's metricsFormat, matched with the `regex` engine so each search honours a timeout."""

    pattern: str
    compiled: Any

    def find_all(self, line: str, deadline: float) -> list[tuple[str, str]]:
        return [(match.name, match.value) for match in self.scan(line, 0, -1, deadline)]

    def scan(self, line: str, pos: int, prev_end: int, deadline: float) -> Iterator[Match]:
        end = len(line)
        search = self.compiled.search
        while pos <= end:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FilterTimeout(self.pattern)
            try:
                match = search(line, pos, timeout=remaining)
            except TimeoutError as err:
                raise FilterTimeout(self.pattern) from err
            if match is None:
                break
            start, stop = match.span()
            accept = True
            if stop == pos:
                # Go ignores an empty match right after the previous match and steps one character on.
                accept = start != prev_end
                pos += 1
            else:
                pos = stop
            prev_end = stop
            if accept:
                yield Match(start, stop, (match.group(1) or "").strip(), (match.group(2) or "").strip(),
                            match.end(2))


# Katib's default filter, rewritten into an equivalent that runs in linear time on Python's engine:
# the name run is possessive (giving back characters can never help, the next one would be a name
# character, not `=`), and a match may only start where no name character precedes it (a match from
# inside a run would also succeed from the run's start, which is further left). Only the position
# where the previous match ended escapes that rule, handled by `_AT`.
_NAME = r"[\w|-]"
_VALUE = r"[\t\n\f\r ]*=[\t\n\f\r ]*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)"
_ANYWHERE = re.compile(rf"(?<!{_NAME})({_NAME}++){_VALUE}", re.ASCII)
_AT = re.compile(rf"({_NAME}++){_VALUE}", re.ASCII)


@dataclass(frozen=True, slots=True)
class DefaultFilter:
    """Katib's `DefaultFilter` with exactly its matches, without its quadratic backtracking."""

    pattern: str = DEFAULT_FILTER

    def find_all(self, line: str, deadline: float) -> list[tuple[str, str]]:
        return [(match.group(1), match.group(2)) for match in _default_matches(line)]

    def scan(self, line: str, pos: int, prev_end: int, deadline: float) -> Iterator[Match]:
        for match in _default_matches(line, pos, prev_end):
            yield Match(match.start(), match.end(), match.group(1), match.group(2), match.end(2))


def _default_matches(line: str, pos: int = 0, prev_end: int = -1) -> Iterator[re.Match[str]]:
    match = (_AT.match(line, pos) if pos == prev_end else None) or _ANYWHERE.search(line, pos)
    while match is not None:
        yield match
        stop = match.end()
        match = _AT.match(line, stop) or _ANYWHERE.search(line, stop)


def default_filter_spans(line: str) -> list[tuple[int, int, int, int]]:
    """(name start, name end, value start, value end) of each match of Katib's default filter in `line`."""
    return [(*match.span(1), *match.span(2)) for match in _default_matches(line)]


def compile_filters(patterns: Iterable[str]) -> tuple[Filter, ...]:
    """Validate and compile metricsFormat entries; none given means Katib's default filter."""
    compiled: list[Filter] = []
    for pattern in patterns:
        if pattern == DEFAULT_FILTER:
            compiled.append(DefaultFilter())
            continue
        import regex  # only user filters need it (per-search timeouts); the default filter runs on `re`

        try:
            program = regex.compile(translate_re2(pattern), regex.ASCII | regex.VERSION0)
        except regex.error as err:
            raise FilterError(pattern, f"does not compile: {err}") from None
        if program.groups < 2:
            raise FilterError(
                pattern, f"has {program.groups} capture group(s); two are needed: (name) then (value)"
            )
        compiled.append(UserFilter(pattern, program))
    return tuple(compiled) if compiled else (DefaultFilter(),)
