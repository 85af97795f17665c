"""TensorFlow event directories → MetricLogs, without TensorFlow: one-shot and incremental readers.

The source + parser stage for kind `TensorFlowEvent`: this module lists and reads the files;
`parsers.tfrecord` frames and verifies their records, `parsers.tfdecode` decodes the events (a fast
path for real writers' scalar layouts, our generated protobuf subset for the rest) and
`parsers.tfvalues` writes the numbers. Needs `protobuf` (and preferably `google-crc32c`), never
TensorFlow, tensorboard or numpy.

Rules (DESIGN difference 7 and "Precise rules"):

- Files: every file whose name contains `tfevents` under the directory, recursively, read in the
  string order of their paths relative to it (with `/` separators); records in file order.
- Values: scalars written as `simple_value` (tensorboardX, torch, TF1) and one-element numeric tensors
  (TF2 `tf.summary.scalar`, tensorboard's writer) of any dtype.
- Matching a requested metric name to a summary tag: the tag equals the name; or the name is
  `dir/metric`, the tag is `metric` and the event file's directory path ends with the path
  components of `dir` (component-wise: `train` does not match `.../pretrain`). Rows carry the
  requested name. With no names requested, every scalar tag is reported as `<reldir>/<tag>` for
  files below the directory (e.g. `train/accuracy`), or as the tag for files directly in it, so
  that each name found also selects the same values when requested.
- Time stamps: the event's wall time in UTC, rounded to microseconds, trailing zeros trimmed, `Z`.
- Trouble: a record with a bad CRC or that is not an Event is skipped and counted
  (`SkipReason.BAD_RECORD`); a value of a requested tag that is not one number is skipped and
  counted (`NOT_A_NUMBER`); an incomplete record at the end of a file is "not written yet": the
  live reader reads it once it is complete, the one-shot reader counts it as a bad record.
  A directory that does not exist (yet) holds no events.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.scalars import ScalarRows, StampFormatter
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipReason, SkipSink, report_skip
from katib_metrics.parsers.tfdecode import decode_records
from katib_metrics.parsers.tfrecord import BadRegion, Scan, scan_records

__all__ = ["EVENT_FILE_MARK", "EventDirReader", "read_event_dir"]

EVENT_FILE_MARK: Final = "tfevents"
CHUNK_SIZE: Final = 1 << 20
_new_log = tuple.__new__


def read_event_dir(
    path: str | os.PathLike[str],
    spec: CollectorSpec,
    stats: ParseStats | None = None,
    on_skip: SkipSink | None = None,
) -> Iterator[MetricLog]:
    """Every wanted scalar in the event files under `path`, in file order then record order.

    One-shot: an incomplete record at the end of a file is counted as a bad record (the writer
    stopped mid-record). `stats.lines` counts events read, `stats.values[name]` values yielded.
    """
    reader = EventDirReader(path, spec, stats, on_skip)
    yield from itertools.chain.from_iterable(reader.iter_batches())
    reader.report_incomplete_tails()


class EventDirReader:
    """Incremental reader of an event directory for live collection; keeps one offset per file.

    `poll()` returns the rows that became readable since the last poll: new files, grown files, a
    record that was incomplete and is now complete (read exactly once). Works before the directory
    exists. Files are expected to only grow, as TensorFlow's writers do: a file that shrinks is
    not re-read from the start (that could only duplicate rows).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: CollectorSpec,
        stats: ParseStats | None = None,
        on_skip: SkipSink | None = None,
    ) -> None:
        self.root = os.fspath(path)
        self.spec = spec
        self.stats = stats if stats is not None else ParseStats()
        self._on_skip = on_skip
        self._files: dict[str, _FileState] = {}
        self._matchers: dict[str, _Matcher] = {}  # by directory relative to the root
        self._unlistable_dirs: set[str] = set()
        self._stamp = StampFormatter()

    def poll(self) -> list[MetricLog]:
        """The rows that became readable since the last call."""
        return list(itertools.chain.from_iterable(self.iter_batches()))

    def iter_batches(self) -> Iterator[Sequence[MetricLog]]:
        """Like `poll()`, lazily: the rows of one chunk of one file at a time (memory stays bounded)."""
        for relpath, size in list_event_files(self.root, self._unlistable):
            state = self._files.get(relpath)
            if state is None:
                state = self._files[relpath] = _FileState(relpath, self._matcher(relpath))
            if size > state.offset + state.pending:  # new bytes since the last read
                yield from self._read_file(state)

    def _unlistable(self, reldir: str, err: OSError) -> None:
        """A directory that cannot be listed: reported once, retried at every poll."""
        if reldir not in self._unlistable_dirs:
            self._unlistable_dirs.add(reldir)
            self._skip(0, f"{reldir or self.root}: cannot list the directory: {err.strerror or err}")

    def _matcher(self, relpath: str) -> _Matcher:
        reldir = relpath.rpartition("/")[0]
        matcher = self._matchers.get(reldir)
        if matcher is None:
            matcher = self._matchers[reldir] = _Matcher(self.spec, self.root, reldir)
        return matcher

    def offsets(self) -> dict[str, int]:
        """How far each event file, by its path under the root, has been read."""
        return {relpath: state.offset for relpath, state in self._files.items()}

    def forget(self, relpath: str) -> None:
        """The file at `relpath` is another file now (written again under the same name): read it from its start."""
        self._files.pop(relpath, None)

    @property
    def pending_bytes(self) -> int:
        """Bytes at the ends of files that do not form a complete record yet (as of the last poll)."""
        return sum(state.pending for state in self._files.values())

    def report_incomplete_tails(self) -> None:
        """Count each file's incomplete last record as a bad record: the end of a one-shot read."""
        for state in self._files.values():
            if state.pending and not state.resyncing:
                detail = f"{state.relpath}: incomplete record of {state.pending} bytes at the end of the file"
                self._skip(state.offset, detail)

    def _read_file(self, state: _FileState) -> Iterator[Sequence[MetricLog]]:
        path = os.path.join(self.root, state.relpath)
        try:
            with open(path, "rb") as file:
                file.seek(state.offset)
                carry = b""
                while chunk := file.read(CHUNK_SIZE):
                    buf = carry + chunk if carry else chunk
                    rows = self._read_buffer(state, buf)
                    carry = buf[len(buf) - state.pending :] if state.pending else b""
                    if rows:
                        yield rows
        except FileNotFoundError:
            return  # removed between listing and opening: nothing more to read from it
        except OSError as err:
            self._skip(state.offset, f"{state.relpath}: cannot read: {err.strerror or err}")

    def _read_buffer(self, state: _FileState, buf: bytes) -> Sequence[MetricLog]:
        """Decode the complete records of `buf` (file bytes from `state.offset`); advance the state."""
        base = state.offset
        scan = scan_records(buf, resyncing=state.resyncing)
        for region in scan.bad:
            self._skip_region(state, base, region)
        rows = self._decode(state, scan, buf, base)
        state.offset = base + scan.resume
        state.pending = len(buf) - scan.resume
        state.resyncing = scan.resyncing
        return rows

    def _decode(self, state: _FileState, scan: Scan, buf: bytes, base: int) -> Sequence[MetricLog]:
        """Rows of the wanted scalars in the records `scan` found in `buf`, formatted a batch at a time."""
        decoded = decode_records(scan.records, state.matcher.known, state.matcher.names_for, buf, scan.runs)
        offsets = scan.offsets
        for index, detail in decoded.bad_events:
            self._skip(base + offsets[index], f"{state.relpath}: {detail}")
        if state.matcher.requested:
            for index, tag, reason in decoded.not_scalars:
                skip = Skipped(
                    base + offsets[index], SkipReason.NOT_A_NUMBER, f"{state.relpath}: tag {tag!r}: {reason}"
                )
                self._record(skip)
        self.stats.lines += decoded.events
        values = self.stats.values
        for key, count in Counter(decoded.names).items():
            for name in key:
                values[name] += count
        if decoded.all_float32:  # numbers until someone reads the rows (see `parsers.scalars`)
            return ScalarRows(decoded.wall_times(), decoded.names, decoded.floats(), self._stamp)
        stamps = self._stamp.many(decoded.wall_times())
        texts = decoded.texts()
        return [
            _new_log(MetricLog, (stamp, name, text))
            for stamp, key, text in zip(stamps, decoded.names, texts, strict=True) for name in key
        ]

    def _skip_region(self, state: _FileState, base: int, region: BadRegion) -> None:
        where = f"bytes {base + region.start}-{base + region.end}"
        self._skip(base + region.start, f"{state.relpath}: {region.reason}, {where} skipped")

    def _skip(self, offset: int, detail: str) -> None:
        self._record(Skipped(offset, SkipReason.BAD_RECORD, detail))

    def _record(self, skip: Skipped) -> None:
        report_skip(skip, self.stats, self._on_skip)


@dataclass(slots=True)
class _FileState:
    relpath: str
    matcher: _Matcher
    offset: int = 0
    pending: int = 0
    resyncing: bool = False


def list_event_files(root: str, on_error: Callable[[str, OSError], None] | None = None) -> list[tuple[str, int]]:
    """(relative path with `/` separators, size) of every event file under `root`, sorted by path.

    A directory that does not exist (or vanished) holds nothing; one that cannot be listed is passed
    to `on_error` with its relative path, and its subtree is left out of this listing.
    """
    found: list[tuple[str, int]] = []
    stack = [""]
    while stack:
        reldir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, reldir) if reldir else root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            if on_error is not None:
                on_error(reldir, err)
            continue
        for entry in entries:
            relpath = f"{reldir}/{entry.name}" if reldir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(relpath)
                elif EVENT_FILE_MARK in entry.name and entry.is_file():
                    found.append((relpath, entry.stat().st_size))
            except FileNotFoundError:
                continue  # vanished while listing
    found.sort()
    return found


@dataclass(slots=True)
class _Matcher:
    """Which requested metric names a tag stands for in the event files of one directory (memoised)."""

    spec: CollectorSpec
    root: str
    _reldir: str
    _dir_parts: tuple[str, ...] = ()
    known: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        absolute = os.path.abspath(os.path.join(self.root, self._reldir))
        self._dir_parts = tuple(part for part in absolute.replace(os.sep, "/").split("/") if part)

    @property
    def requested(self) -> bool:
        return bool(self.spec.metric_names)

    def names_for(self, tag: str) -> tuple[str, ...]:
        """The requested names `tag` stands for in this file; remembered in `known`."""
        names = self.known.get(tag)
        if names is None:
            names = self.known[tag] = self._match(tag)
        return names

    def _match(self, tag: str) -> tuple[str, ...]:
        if not self.spec.metric_names:
            return (f"{self._reldir}/{tag}" if self._reldir else tag,)
        return tuple(name for name in self.spec.metric_names if self._matches(name, tag))

    def _matches(self, name: str, tag: str) -> bool:
        if tag == name:
            return True
        directory, _, leaf = name.rpartition("/")
        if not directory or tag != leaf:
            return False
        wanted = tuple(part for part in directory.split("/") if part)
        return not wanted or self._dir_parts[-len(wanted) :] == wanted
