"""TFRecord framing: CRC32C backends agree, records split exactly, trouble is skipped or waited for."""

from __future__ import annotations

import io
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.summary.writer.record_writer import RecordWriter

from katib_metrics.parsers import tfrecord
from katib_metrics.parsers.tfrecord import HEADER_SIZE, crc32c, masked_crc32c, pure_crc32c, scan_records


def frame(*payloads: bytes) -> bytes:
    """Records framed by tensorboard's own RecordWriter (the real writer, not ours)."""
    out = io.BytesIO()
    writer = RecordWriter(out)
    for payload in payloads:
        writer.write(payload)
    return out.getvalue()


PAYLOADS = [b"first", b"", b"x" * 300, os.urandom(70), b"last record"]


def test_crc32c_matches_the_published_check_value() -> None:
    # RFC 3720 (iSCSI) check value of CRC-32C over the ASCII digits 1..9.
    assert crc32c(b"123456789") == 0xE3069283
    assert pure_crc32c(b"123456789") == 0xE3069283


def test_the_c_backend_is_used_when_installed() -> None:
    pytest.importorskip("google_crc32c")
    assert tfrecord.crc32c_backend == "c"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_pure_and_c_crc32c_agree(data: bytes) -> None:
    assert pure_crc32c(data) == crc32c(data)


def test_masked_crc_matches_tensorboards_writer() -> None:
    framed = frame(b"payload")
    (length_crc,) = struct.unpack_from("<I", framed, 8)
    (data_crc,) = struct.unpack_from("<I", framed, HEADER_SIZE + len(b"payload"))
    assert masked_crc32c(framed[:8]) == length_crc
    assert masked_crc32c(b"payload") == data_crc


def test_records_come_back_in_order_with_their_offsets() -> None:
    buf = frame(*PAYLOADS)
    scan = scan_records(buf)
    assert scan.records == PAYLOADS
    assert scan.offsets[0] == 0
    assert scan.offsets[1] == HEADER_SIZE + len(PAYLOADS[0]) + 4
    assert scan.resume == len(buf)
    assert not scan.bad and not scan.resyncing


def test_a_cut_anywhere_yields_the_complete_prefix_and_resumes_exactly() -> None:
    buf = frame(*PAYLOADS)
    for cut in range(len(buf) + 1):
        first = scan_records(buf[:cut])
        assert not first.bad, cut
        assert first.records == PAYLOADS[: len(first.records)], cut
        rest = scan_records(buf, first.resume)
        assert first.records + rest.records == PAYLOADS, cut


def test_a_flipped_data_byte_loses_only_that_record() -> None:
    buf = bytearray(frame(*PAYLOADS))
    third = HEADER_SIZE + len(PAYLOADS[0]) + 4 + HEADER_SIZE + 4 + HEADER_SIZE
    buf[third + 10] ^= 0x01
    scan = scan_records(bytes(buf))
    assert scan.records == [PAYLOADS[0], PAYLOADS[1], PAYLOADS[3], PAYLOADS[4]]
    assert [region.reason for region in scan.bad] == ["data CRC mismatch"]
    assert scan.resume == len(buf)


def test_a_corrupt_length_resynchronises_at_the_next_record() -> None:
    buf = bytearray(frame(*PAYLOADS))
    buf[2] ^= 0x40  # the length of the first record now points far beyond the buffer
    scan = scan_records(bytes(buf))
    assert scan.records == PAYLOADS[1:]
    [region] = scan.bad
    assert region.reason == "header CRC mismatch"
    assert (region.start, region.end) == (0, HEADER_SIZE + len(PAYLOADS[0]) + 4)


def test_a_resync_that_runs_out_of_bytes_continues_without_counting_twice() -> None:
    good = frame(b"after the damage")
    damaged = b"\xff" * 40
    first = scan_records(damaged)
    assert first.resyncing and len(first.bad) == 1 and not first.records
    later = scan_records(damaged + good, first.resume, resyncing=True)
    assert later.records == [b"after the damage"]
    assert not later.bad and not later.resyncing


def test_verification_can_be_switched_off() -> None:
    buf = bytearray(frame(b"abc", b"def"))
    buf[HEADER_SIZE] ^= 0x03  # "a" -> "b"
    assert scan_records(bytes(buf), verify=False).records == [b"bbc", b"def"]


def test_empty_input_is_nothing_pending() -> None:
    scan = scan_records(b"")
    assert (scan.records, scan.bad, scan.resume, scan.resyncing) == ([], [], 0, False)


@settings(max_examples=150, deadline=None)
@given(
    # The prefix keeps a payload from being a valid header itself (8 bytes followed by their own
    # masked CRC), which a resync could not tell from a real header: TFRecord has no sync marker.
    st.lists(st.binary(max_size=40).map(lambda data: b"payload: " + data), min_size=1, max_size=8),
    st.integers(min_value=0),
    st.integers(min_value=1, max_value=255),
)
def test_one_corrupt_byte_loses_at_most_the_record_it_hit(payloads: list[bytes], where: int, flip: int) -> None:
    buf = bytearray(frame(*payloads))
    position = where % len(buf)
    buf[position] ^= flip
    scan = scan_records(bytes(buf))
    starts = [sum(HEADER_SIZE + len(p) + 4 for p in payloads[:i]) for i in range(len(payloads))]
    hit = max(i for i, start in enumerate(starts) if start <= position)
    if scan.records == payloads:
        # Only the length's own CRC was hit: the length is intact and the data CRC vouches for it.
        assert 8 <= position - starts[hit] < HEADER_SIZE and not scan.bad
    else:
        assert scan.records == payloads[:hit] + payloads[hit + 1 :]
        assert len(scan.bad) == 1


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_and_every_byte_is_accounted_for(data: bytes) -> None:
    scan = scan_records(data)
    assert 0 <= scan.resume <= len(data)
    assert all(region.start < region.end <= len(data) for region in scan.bad)
