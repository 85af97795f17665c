"""Input-level mistakes that would otherwise end in a silent "nothing found": one warning line each (pure).

A `.jsonl` file read as text, a binary file, an event file given instead of its directory, a directory
without event files, a metrics file that never appeared, `-m ''`. The per-metric "why unavailable" is
`parsers.diagnosis`; these name the likely mistake with the input as a whole.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import BinaryIO

from katib_metrics.parsers.model import FileFormat

__all__ = ["HeadKeeper", "empty_metric_warning", "input_warnings", "missing_path_warning"]

_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_HEAD = 4096


def empty_metric_warning(metric_args: Sequence[str], flag: str = "-m") -> str | None:
    """`-m ''` (or `-m ';'`) names no metric: said once, since it silently means "every metric found"."""
    if any(not [name for name in item.split(";") if name.strip()] for item in metric_args):
        return f"{flag} '' names no metric and is ignored" + (
            "; without a name every metric found is reported"
            if all(not item.replace(";", "").strip() for item in metric_args) else "")
    return None


def missing_path_warning(path: str, fmt: FileFormat) -> str | None:
    """After the training ended: the metrics file or event directory it was expected to write never appeared."""
    if os.path.exists(path):
        return None
    what = "event directory" if fmt is FileFormat.TFEVENT else "metrics file"
    return f"{path} never appeared: nothing wrote a {what} there (check the path the training writes to)"


def input_warnings(path: str, fmt: FileFormat, *, found_any: bool, head: bytes | None = None) -> list[str]:
    """Warnings about the input as a whole; only when nothing at all was found (otherwise it was right)."""
    if found_any:
        return []
    if fmt is FileFormat.TFEVENT:
        return _event_dir_warnings(path)
    if head is None:
        head = _head(path)
    where = "standard input" if path == "-" else path
    if "tfevents" in os.path.basename(path):
        return [f"{where} is a TensorFlow event file: give its directory, which is read as events "
                f"(katib-metrics parse {os.path.dirname(path) or '.'})"]
    if b"\0" in head[:_HEAD]:
        return [f"{where} looks binary (NUL bytes at its start), not a text log: nothing can be read from it"]
    if fmt is FileFormat.TEXT and (path.lower().endswith(_JSON_SUFFIXES) or _mostly_objects(head)):
        return [f"{where} looks like JSON lines, read here as text: use --format json"]
    return []


def _event_dir_warnings(path: str) -> list[str]:
    from katib_metrics.parsers.tfevent import list_event_files

    if not os.path.isdir(path):
        return []  # said by `missing_path_warning`
    if list_event_files(path):
        return []
    return [f"{path} holds no TensorFlow event files (names containing 'tfevents', searched recursively): "
            "is it the directory the training's SummaryWriter writes to?"]


def _head(path: str) -> bytes:
    """The first bytes of a regular file; nothing of a FIFO (opening one waits for a writer) or a device
    (`/dev/zero` never ends), so a diagnosis never blocks the exit it comes before."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        return os.read(fd, _HEAD) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return b""
    finally:
        os.close(fd)


def _mostly_objects(head: bytes) -> bool:
    lines = [line.strip() for line in head.splitlines()[:20] if line.strip()]
    return bool(lines) and sum(line.startswith(b"{") and line.endswith(b"}") for line in lines) * 2 > len(lines)


class HeadKeeper:
    """A reader that keeps the first `limit` bytes read through it: standard input diagnosed afterwards."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.head = bytearray()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        room = self.limit + 1 - len(self.head)  # one byte more: the sample then knows it was cut
        if room > 0:
            self.head += data[:room]
        return data

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> HeadKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
