"""Line-oriented parsing: the `LineParser` role, its factory, and splitting byte streams into lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.jsonl import JsonLinesParser
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricLog
from katib_metrics.parsers.stats import ParseStats, SkipSink
from katib_metrics.parsers.text import DEFAULT_REGEX_TIMEOUT, TextParser

__all__ = ["LineParser", "decode_line", "iter_lines", "make_line_parser"]

CHUNK_SIZE = 1 << 20


class LineParser(Protocol):
    """Turns one line (without its newline) into the MetricLogs it holds."""

    stats: ParseStats

    def parse_line(self, line: str, lineno: int, default_time: str = ...) -> list[MetricLog]: ...


def make_line_parser(
    spec: CollectorSpec,
    *,
    regex_timeout: float = DEFAULT_REGEX_TIMEOUT,
    stats: ParseStats | None = None,
    on_skip: SkipSink | None = None,
) -> LineParser:
    """The parser for `spec.format` (TEXT or JSON); FilterError for a bad filter, SpecError otherwise."""
    if spec.format is FileFormat.TEXT:
        return TextParser(spec, regex_timeout=regex_timeout, stats=stats, on_skip=on_skip)
    if spec.format is FileFormat.JSON:
        if spec.filters:
            raise SpecError("metrics filters (-f) cannot be used with JSON lines: JSON keys name the metrics")
        return JsonLinesParser(spec, stats=stats, on_skip=on_skip)
    raise SpecError(f"format {spec.format} is not line-oriented; use TEXT or JSON")


def decode_line(raw: bytes) -> str:
    """Bytes of one line → text: invalid UTF-8 is replaced, a CR before the newline is dropped."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


def iter_lines(stream: BinaryIO | Iterable[bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """Lines of a byte stream, read in chunks; an unterminated last line is yielded at the end."""
    carry = b""
    chunks = iter(lambda: stream.read(chunk_size), b"") if hasattr(stream, "read") else iter(stream)
    for chunk in chunks:
        pieces = (carry + chunk).split(b"\n")
        carry = pieces.pop()
        for piece in pieces:
            yield decode_line(piece)
    if carry:
        yield decode_line(carry)
