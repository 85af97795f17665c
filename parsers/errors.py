"""The exception tree of the parsing toolkit; every error names the input that caused it.

    ParseError                 base of everything `parsers` raises on purpose
    ├── SpecError              a bad collector spec: usage errors (exit 2 in the CLI)
    │   └── FilterError        a metricsFormat regex that does not compile or has < 2 groups
    └── InputError             input that cannot be read at all (exit 1 in the CLI)

Bad *rows* are not errors: they are skipped and counted (see `parsers.stats`).
"""

from __future__ import annotations


class ParseError(Exception):
    """Base class of the errors `parsers` raises."""


class SpecError(ParseError, ValueError):
    """The collector spec is unusable; the message says which part and how to fix it."""


class FilterError(SpecError):
    """A metricsFormat regex is invalid."""

    def __init__(self, pattern: str, problem: str) -> None:
        super().__init__(f"invalid metrics filter `{pattern}`: {problem}")
        self.pattern = pattern
        self.problem = problem


class InputError(ParseError, OSError):
    """The input cannot be read."""
