"""TFRecord framing: split event-file bytes into verified records, resumable at record boundaries.

The first stage of event-file reading (`parsers.tfevent` decodes what this yields). A record is

    u64 length (little-endian) | u32 masked CRC32C of those 8 bytes | data | u32 masked CRC32C of data

Trouble has a decided policy (STYLE.md 5 and 6):

- a short tail (header or data not complete yet) is "not written yet": the scan stops before it and
  reports the offset to resume from, so re-reading later never drops or duplicates a record;
- a record whose data CRC fails is reported as bad and skipped; the length was verified, so reading
  goes on at the next record boundary;
- a header whose CRC fails has no trustworthy length: the bytes are searched for the next valid
  header and everything in between is reported as one bad region.

Where a block of records repeats (a training loop logging the same scalars every step), the scan takes
the whole run at once (`parsers.tfruns`): the same checks, done a byte column at a time; the runs are
reported in `Scan.runs` so the decoder can read them by columns too. Elsewhere it goes record by
record, looking for a run again after 8 records, then 16, 32, ... while none is found.

CRC32C uses the C implementation of `google_crc32c` when it is importable, else a table-driven
pure-Python fallback (much slower per byte; for typical event records of 30-70 bytes the
whole reader loses about a third of its speed).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Final

from katib_metrics.parsers.tfruns import MAX_PERIOD, MIN_BLOCKS, Run, block_period, masks_match, repeating_blocks

__all__ = [
    "HEADER_SIZE",
    "BadRegion",
    "Scan",
    "crc32c",
    "crc32c_backend",
    "masked_crc32c",
    "pure_crc32c",
    "scan_records",
]

HEADER_SIZE: Final = 12
FOOTER_SIZE: Final = 4
_MASK_DELTA: Final = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_EACH: Final = 8  # records read one at a time before looking for a run again; doubled while none is found
_MOST_EACH: Final = 4096


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE: Final = _make_table()


def pure_crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of `data`, table-driven; the fallback when google_crc32c is missing."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _load_crc32c() -> tuple[Callable[[bytes], int], str]:
    try:
        import google_crc32c
    except ImportError:
        return pure_crc32c, "python"
    if google_crc32c.implementation != "c":
        # Its own fallback is slower than ours (it is written for generality, not speed).
        return pure_crc32c, "python"
    value: Callable[[bytes], int] = google_crc32c.value
    return value, "c"


crc32c, crc32c_backend = _load_crc32c()
"""The CRC32C function in use and which backend it is ("c" or "python")."""


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant, so CRCs of CRCs differ."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class BadRegion:
    """Bytes `[start, end)` of a file that hold no valid record; `reason` says which check failed."""

    start: int
    end: int
    reason: str


@dataclass(slots=True)
class Scan:
    """What one pass over a buffer found: record payloads in order (and their offsets), bad regions,
    and where to resume.

    `resume` is an offset into the buffer: every byte before it has been accounted for (as a
    record or a bad region); the bytes from `resume` on are an incomplete record, to be re-read
    once the file has grown. `resyncing` is true when the scan was looking for a valid header
    after a corrupt one and ran out of bytes: the next scan must continue the search without
    reporting the same bad region again.
    """

    records: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    bad: list[BadRegion] = field(default_factory=list)
    resume: int = 0
    resyncing: bool = False
    runs: list[tuple[int, Run]] = field(default_factory=list)  # (index in `records` of its first record, run)


def scan_records(buf: bytes, start: int = 0, *, verify: bool = True, resyncing: bool = False) -> Scan:
    """Split `buf[start:]` into complete TFRecord payloads (see the module docstring for the policy).

    Offsets in the result are offsets into `buf`. With `resyncing`, the scan starts by searching for
    a valid header (continuing an earlier search) and does not report the skipped bytes again.
    """
    scan = Scan(resume=start)
    pos = start
    if resyncing:
        pos = _resync(buf, pos, scan, report_from=None)
        if scan.resyncing:
            return scan
    each = _EACH
    while True:
        after_runs = _scan_runs(buf, pos, scan, verify)
        # Right after a run, an odd record is likely followed by the run again; where runs are rare, back off.
        each = 1 if after_runs > pos else min(2 * each, _MOST_EACH)
        pos, stopped = _scan_each(buf, after_runs, scan, verify, each)
        if stopped is None:
            continue  # `each` good records: look for a run again
        if not stopped:
            scan.resume = pos
            return scan
        pos = _resync(buf, pos, scan, report_from=pos)
        if scan.resyncing:
            return scan


def _scan_runs(buf: bytes, pos: int, scan: Scan, verify: bool) -> int:
    """Take the runs of repeating blocks (`parsers.tfruns`) that start at `pos`; where they end."""
    while (found := _frame_run(buf, pos, verify)) is not None:
        run, records, offsets = found
        scan.runs.append((len(scan.records), run))
        scan.records += records
        scan.offsets += offsets
        pos = run.end
    return pos


def _frame_run(buf: bytes, pos: int, verify: bool) -> tuple[Run, list[bytes], list[int]] | None:
    """A run of at least MIN_BLOCKS blocks at `pos`: its records and their offsets, all data CRCs good."""
    run = _repeating_run(buf, pos)
    if run is None:
        return None
    starts = run.data_starts()
    datas = [run.slices(buf, start, length) for start, length in zip(starts, run.lengths, strict=True)]
    if verify:
        footers = [start + length for start, length in zip(starts, run.lengths, strict=True)]
        good = min(map(_good_blocks, repeat(buf), repeat(run), footers, datas))
        if good < MIN_BLOCKS:
            return None  # the per-record loop reports the bad record
        if good < run.blocks:
            run, datas = Run(pos, run.lengths, good), [record_datas[:good] for record_datas in datas]
    if len(starts) == 1:
        return run, datas[0], list(range(pos, run.end, run.stride))
    records = [data for in_block in zip(*datas, strict=True) for data in in_block]
    offsets = [first + start - HEADER_SIZE for first in range(pos, run.end, run.stride) for start in starts]
    return run, records, offsets


def _repeating_run(buf: bytes, pos: int) -> Run | None:
    """The blocks from `pos` whose record lengths repeat the first block's (at least MIN_BLOCKS)."""
    lengths: list[int] = []
    at = pos
    while len(lengths) < 2 * MAX_PERIOD and len(buf) - at >= HEADER_SIZE:
        lengths.append(_U64.unpack_from(buf, at)[0])
        at += lengths[-1] + HEADER_SIZE + FOOTER_SIZE
    block = block_period(lengths)
    if block is None:
        return None
    run = Run(pos, block, (len(buf) - pos) // (sum(block) + (HEADER_SIZE + FOOTER_SIZE) * len(block)))
    if run.blocks < MIN_BLOCKS:
        return None
    # Only the length bytes: a good data CRC vouches for the rest of a header, as in `_scan_each`.
    lengths_at = [start - HEADER_SIZE + byte for start in run.data_starts() for byte in range(8)]
    run = Run(pos, block, repeating_blocks(buf, run, lengths_at))
    return run if run.blocks >= MIN_BLOCKS else None


def _good_blocks(buf: bytes, run: Run, footer: int, datas: list[bytes]) -> int:
    """How many blocks, from the first, have a good data CRC at `footer` for the record data `datas`."""
    stored = run.gather(buf, [footer], 4)
    if masks_match(list(map(crc32c, datas)), stored, _MASK_DELTA):
        return run.blocks
    return next(i for i, data in enumerate(datas) if masked_crc32c(data) != _U32.unpack_from(stored, 4 * i)[0])


def _scan_each(buf: bytes, pos: int, scan: Scan, verify: bool, left: int) -> tuple[int, bool | None]:
    """Read consecutive good records from `pos`, one at a time; stop at a short tail or a bad header,
    or after `left` records (None: the caller looks for a run again).

    Returns where it stopped and whether that is a header with a bad CRC. This is the hot loop:
    locals only, one CRC per good record. The header's own CRC is checked only when something is
    off (data CRC mismatch, or a length reaching past the buffer): a wrong length would make the
    data CRC fail, so a good data CRC vouches for the header too.
    """
    end = len(buf)
    unpack_length = _U64.unpack_from
    unpack_u32 = _U32.unpack_from
    crc = crc32c
    append = scan.records.append
    append_offset = scan.offsets.append
    while end - pos >= HEADER_SIZE:
        if not left:
            return pos, None
        left -= 1
        data_start = pos + HEADER_SIZE
        data_end = data_start + unpack_length(buf, pos)[0]
        if data_end + FOOTER_SIZE > end:
            return pos, verify and not _header_ok(buf, pos)
        data = buf[data_start:data_end]
        if verify:
            c = crc(data)
            if (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF != unpack_u32(buf, data_end)[0]:
                if not _header_ok(buf, pos):
                    return pos, True
                scan.bad.append(BadRegion(pos, data_end + FOOTER_SIZE, "data CRC mismatch"))
                pos = data_end + FOOTER_SIZE
                continue
        append(data)
        append_offset(pos)
        pos = data_end + FOOTER_SIZE
    return pos, False


def _resync(buf: bytes, pos: int, scan: Scan, report_from: int | None) -> int:
    """Find the next offset after `pos` holding a header with a valid CRC; record the gap as bad.

    When no valid header starts in the rest of `buf`, the search must go on once more bytes
    arrive: `scan.resume` is set to the first offset that could still start one and
    `scan.resyncing` to true.
    """
    end = len(buf)
    candidate = pos + 1 if report_from is not None else pos
    while end - candidate >= HEADER_SIZE:
        if _header_ok(buf, candidate):
            if report_from is not None:
                scan.bad.append(BadRegion(report_from, candidate, "header CRC mismatch"))
            return candidate
        candidate += 1
    if report_from is not None:
        scan.bad.append(BadRegion(report_from, candidate, "header CRC mismatch"))
    scan.resume = candidate
    scan.resyncing = True
    return candidate


def _header_ok(buf: bytes, pos: int) -> bool:
    (length_crc,) = _U32.unpack_from(buf, pos + 8)
    return masked_crc32c(buf[pos : pos + 8]) == int(length_crc)
