"""Runs read by columns (`parsers.tfruns`) give exactly what the per-record paths give, on any bytes.

The oracle is the same scan and decode with run finding switched off. Files are built from the
real writers' messages (tensorboard's protos, both scalar layouts): blocks of tags logged every
step, steps crossing varint lengths, irregular records between blocks, bytes flipped anywhere,
cut tails, and tags of one length taking turns (framing repeats, layout does not).
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar import summary_v2

from katib_metrics.parsers import tfrecord
from katib_metrics.parsers.tfdecode import decode_records
from katib_metrics.parsers.tfrecord import masked_crc32c, scan_records
from katib_metrics.parsers.tfruns import masks_match

TAGS = ["loss", "lr_x", "acc", "train/accuracy", "val/loss", "ünï"]
T0 = 1_700_000_000.0


def frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def scalar(style: str, tag: str, value: float, wall: float, step: int) -> bytes:
    if style == "simple":
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    else:
        summary = summary_v2.scalar_pb(tag, value)
        summary.value[0].metadata.data_class = summary_pb2.DATA_CLASS_SCALAR  # as tensorboard's Writer sets it
    return bytes(event_pb2.Event(wall_time=wall, step=step, summary=summary).SerializeToString())


def irregular(kind: str, step: int) -> bytes:
    event = event_pb2.Event(wall_time=T0 + step, step=step)
    if kind == "version":
        event.file_version = "brain.Event:2"
    elif kind == "two values":
        event.summary.value.add(tag="loss", simple_value=1.5)
        event.summary.value.add(tag="acc", simple_value=0.5)
    elif kind == "text":
        event.summary.value.add(tag="loss").tensor.string_val.append(b"not a number")
    else:
        return b"\x09garbage, not an event"
    return bytes(event.SerializeToString())


@st.composite
def event_bytes(draw: Any) -> bytes:
    style = draw(st.sampled_from(["simple", "tensor"]))
    block = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=4))
    turns = draw(st.booleans())  # "loss" and "lr_x" (one length) take turns from block to block
    step = draw(st.sampled_from([0, 1, 100, 16_300, 2**21 - 40]))
    gap = draw(st.sampled_from([0, 1, 7]))
    wall = draw(st.sampled_from(["varying", "constant", "zero"]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    odd = draw(st.dictionaries(st.integers(0, 150), st.sampled_from(["version", "two values", "text", "junk", "loss"])))
    out = []
    for index in range(draw(st.integers(0, 150))):
        if index in odd:
            kind = odd[index]
            out.append(scalar(style, "loss", 2.0, T0, 3) if kind == "loss" else irregular(kind, step))
        for tag in block:
            if turns and tag == "loss" and index % 2:
                tag = "lr_x"
            value = rng.choice([rng.random(), -rng.random() * 1e6, 0.0, math.inf, math.nan, 1e-45])
            stamp = {"varying": T0 + step * 0.5, "constant": T0, "zero": 0.0}[wall]
            out.append(scalar(style, tag, value, stamp, step))
        step += gap
    framed = list(map(frame, out))
    starts = [0]  # where each record's data starts: flips there hit keys, lengths and varints
    for record in framed:
        starts.append(starts[-1] + len(record))
    data = bytearray(b"".join(framed))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            where = rng.choice([rng.randrange(len(data)), rng.choice(starts) + 12 + rng.randrange(14)])
            data[min(where, len(data) - 1)] ^= 1 << rng.randrange(8)
    return bytes(data[: len(data) - draw(st.sampled_from([0, 0, 1, 7]))])


def names_for(tag: str) -> tuple[str, ...]:
    return () if tag == "acc" else (f"m:{tag}", "both") if tag == "loss" else (f"m:{tag}",)


def read(data: bytes, *, runs: bool, verify: bool = True) -> tuple[object, ...]:
    """Everything the scan and the decode report, with run finding on or off."""
    with mock.patch.object(tfrecord, "_frame_run", tfrecord._frame_run if runs else lambda *_: None):
        scan = scan_records(data, verify=verify)
    decoded = decode_records(scan.records, {"val/loss": ("known",)}, names_for, data, scan.runs)
    return (scan.records, scan.offsets, scan.bad, scan.resume, scan.resyncing, decoded.events, decoded.bad_events,
            decoded.not_scalars, decoded.names, b"".join(decoded.raw_walls), decoded.texts(), decoded.all_float32)


@settings(max_examples=300, deadline=None)
@given(event_bytes(), st.booleans())
def test_columns_agree_with_the_per_record_paths(data: bytes, verify: bool) -> None:
    assert read(data, runs=True, verify=verify) == read(data, runs=False, verify=verify)


def test_a_clean_training_log_is_read_almost_entirely_by_columns() -> None:
    """Three tags every step and one every 50th, 3,000 steps across two varint lengths."""
    records = []
    for step in range(3000):
        records += [scalar("tensor", tag, step / 7, T0 + step, step) for tag in ("loss", "lr_x", "train/accuracy")]
        if step % 50 == 49:
            records.append(scalar("tensor", "val/loss", 1 / (step + 1), T0 + step, step))
    data = b"".join(map(frame, records))
    scan = scan_records(data)
    assert sum(run.records for _, run in scan.runs) > 0.9 * len(records)
    assert {len(run.lengths) for _, run in scan.runs} == {3}
    decoded = decode_records(scan.records, {}, names_for, data, scan.runs)
    assert max(map(len, decoded.raw_walls)) > 8 * 3 * 16  # gathered by columns, not record by record
    assert read(data, runs=True) == read(data, runs=False)
    assert decoded.texts()[:3] == ["0", "0", "0"] and decoded.texts()[-4:] == ["428.42856", "428.42856", "428.42856",
                                                                              "0.00033333333"]


def test_every_single_bit_flip_in_a_run_record_reads_as_record_by_record() -> None:
    """Each bit of one record in the middle of a run flipped in turn (keys, lengths, varints, CRCs)."""
    for style in ("simple", "tensor"):
        records = [frame(scalar(style, "loss", step / 3, T0 + step, 16_300 + step)) for step in range(40)]
        start = sum(map(len, records[:20]))
        for where in range(start, start + len(records[20])):
            for bit in range(8):
                data = bytearray(b"".join(records))
                data[where] ^= 1 << bit
                for verify in (True, False):
                    assert read(bytes(data), runs=True, verify=verify) == read(bytes(data), runs=False, verify=verify)


@given(st.lists(st.integers(0, 2**32 - 1), max_size=200), st.data())
def test_masks_are_compared_lane_by_lane(crcs: list[int], data: st.DataObject) -> None:
    masked = [(((c >> 15) | (c << 17)) + tfrecord._MASK_DELTA) & 0xFFFFFFFF for c in crcs]
    stored = struct.pack(f"<{len(masked)}I", *masked)
    assert masks_match(crcs, stored, tfrecord._MASK_DELTA)
    if crcs:
        index, bit = data.draw(st.integers(0, len(crcs) - 1)), data.draw(st.integers(0, 31))
        wrong = struct.pack(f"<{len(masked)}I", *masked[:index], masked[index] ^ (1 << bit), *masked[index + 1 :])
        assert not masks_match(crcs, wrong, tfrecord._MASK_DELTA)
