"""The fast decoding path agrees with the protobuf path on every record it accepts, and only those."""

from __future__ import annotations

import pathlib

import pytest
from tensorboard.summary import Writer

from katib_metrics.parsers._generated import katib_tfevent_pb2 as pb
from katib_metrics.parsers.tfdecode import Decoded, _decode_slow, decode_records
from katib_metrics.parsers.tfrecord import scan_records


def _names_for(tag: str) -> tuple[str, ...]:
    return (f"m:{tag}",)


def _both_paths(records: list[bytes]) -> tuple[Decoded, Decoded]:
    fast = decode_records(records, {}, _names_for)
    slow = Decoded(events=len(records))
    for index, data in enumerate(records):
        _decode_slow(data, index, slow, {}, _names_for)
    return fast, slow


def _assert_same(fast: Decoded, slow: Decoded) -> None:
    assert fast.texts() == slow.texts()
    assert fast.wall_times() == slow.wall_times()
    assert fast.names == slow.names
    assert (fast.events, fast.bad_events, fast.not_scalars) == (slow.events, slow.bad_events, slow.not_scalars)


VALUES = [0.0, -0.0, 0.1, 1 / 3, -2.5e-8, 3.4e38, 1e-45, float("inf"), 123456789.0]
TAGS = ["loss", "train/accuracy", "t" * 120, "ünïcode", "has\x15byte", "x" * 130]


def test_records_of_tensorboards_writer(tmp_path: pathlib.Path) -> None:
    writer = Writer(str(tmp_path))
    for step, value in enumerate(VALUES):
        for tag in TAGS:
            writer.add_scalar(tag, value, step * 1000, wall_time=1_700_000_000.25 + step)
    writer.close()
    [path] = tmp_path.iterdir()
    records = scan_records(path.read_bytes()).records
    fast, slow = _both_paths(records)
    _assert_same(fast, slow)
    assert len(fast.names) == len(VALUES) * len(TAGS)


def test_records_of_tensorboardx(tmp_path: pathlib.Path) -> None:
    tensorboardx = pytest.importorskip("tensorboardX")
    writer = tensorboardx.SummaryWriter(str(tmp_path))
    for step, value in enumerate(VALUES):
        for tag in TAGS:
            writer.add_scalar(tag, value, 2**40 + step, walltime=1_700_000_000.125 + step)
    writer.close()
    [path] = tmp_path.iterdir()
    fast, slow = _both_paths(scan_records(path.read_bytes()).records)
    _assert_same(fast, slow)
    assert len(fast.names) == len(VALUES) * len(TAGS)


def _record(event: pb.Event) -> bytes:
    return bytes(event.SerializeToString())


def test_shapes_the_fast_path_must_leave_to_protobuf() -> None:
    two_values = pb.Event(wall_time=5.0)
    two_values.summary.value.add(tag="a", simple_value=1.0)
    two_values.summary.value.add(tag="b", simple_value=2.0)
    no_wall_time = pb.Event(step=3)
    no_wall_time.summary.value.add(tag="a", simple_value=4.0)
    vector = pb.Event(wall_time=6.0)
    tensor = vector.summary.value.add(tag="v").tensor
    tensor.dtype = pb.DT_FLOAT
    tensor.float_val.extend([1.0])
    tensor.tensor_shape.dim.add(size=1)
    records = [_record(two_values), _record(no_wall_time), _record(vector), b"\x09" + b"\x00" * 3, b""]
    fast, slow = _both_paths(records)
    _assert_same(fast, slow)
    assert fast.texts() == ["1", "2", "4", "1"]
    assert [index for index, _ in fast.bad_events] == [3]


def test_a_length_that_disagrees_sends_the_record_to_protobuf() -> None:
    event = pb.Event(wall_time=1.0)
    event.summary.value.add(tag="loss", simple_value=0.5)
    data = bytearray(_record(event))
    data[data.index(b"loss") - 1] = 3  # tag length 3: "los", then "s" read as a field key
    fast, slow = _both_paths([bytes(data)])
    _assert_same(fast, slow)


def test_many_records_of_one_tag_share_one_lookup() -> None:
    calls: list[str] = []

    def names_for(tag: str) -> tuple[str, ...]:
        calls.append(tag)
        return ("loss",) if tag == "loss" else ()

    records = []
    for step in range(100):
        event = pb.Event(wall_time=1000.0 + step, step=step)
        event.summary.value.add(tag="loss" if step % 2 else "other", simple_value=step)
        records.append(_record(event))
    decoded = decode_records(records, {}, names_for)
    assert decoded.texts() == [str(step) for step in range(1, 100, 2)]
    assert sorted(calls) == ["loss", "other"]
