"""Event directories written at test time by real writers, read back exactly, once, in order."""

from __future__ import annotations

import datetime
import decimal
import io
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.summary import Writer
from tensorboard.summary.writer.record_writer import RecordWriter

from katib_metrics.parsers._generated import katib_tfevent_pb2 as pb
from katib_metrics.parsers.model import ZERO_TIME, CollectorSpec, MetricLog
from katib_metrics.parsers.scalars import StampFormatter
from katib_metrics.parsers.stats import ParseStats, Skipped, SkipReason
from katib_metrics.parsers.tfevent import EventDirReader, read_event_dir
from katib_metrics.parsers.tfrecord import masked_crc32c

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def spec(*names: str) -> CollectorSpec:
    return CollectorSpec(metric_names=names)


def rows(path: pathlib.Path, *names: str, stats: ParseStats | None = None) -> list[tuple[str, str, str]]:
    return [(r.time_stamp, r.name, r.value) for r in read_event_dir(path, spec(*names), stats)]


def write_tensorboard(logdir: pathlib.Path, tag: str, values: list[float], start: float = T0) -> None:
    """tensorboard's own writer: v2 tensor summaries (what TF2 `tf.summary.scalar` writes)."""
    writer = Writer(str(logdir))
    for step, value in enumerate(values):
        writer.add_scalar(tag, value, step, wall_time=start + step)
    writer.close()


def write_tensorboardx(logdir: pathlib.Path, tag: str, values: list[float], start: float = T0) -> None:
    """tensorboardX's SummaryWriter.add_scalar: `simple_value` summaries (what torch writes too)."""
    tensorboardx = pytest.importorskip("tensorboardX")
    writer = tensorboardx.SummaryWriter(str(logdir))
    for step, value in enumerate(values):
        writer.add_scalar(tag, value, step, walltime=start + step)
    writer.close()


def framed(*events: pb.Event) -> bytes:
    """Hand-built events framed by tensorboard's RecordWriter."""
    out = io.BytesIO()
    writer = RecordWriter(out)
    for event in events:
        writer.write(event.SerializeToString())
    return out.getvalue()


def frame(data: bytes) -> bytes:
    """Our own framing: as tensorboard's RecordWriter, but with the C CRC (fast enough for 10,000 files)."""
    header = struct.pack("<Q", len(data))
    return b"".join([header, struct.pack("<I", masked_crc32c(header)), data, struct.pack("<I", masked_crc32c(data))])


def scalar_event(tag: str, value: float, wall_time: float = T0, step: int = 0) -> pb.Event:
    event = pb.Event(wall_time=wall_time, step=step)
    event.summary.value.add(tag=tag, simple_value=value)
    return event


def tensor_event(tag: str, tensor: pb.TensorProto, wall_time: float = T0) -> pb.Event:
    event = pb.Event(wall_time=wall_time)
    event.summary.value.add(tag=tag).tensor.CopyFrom(tensor)
    return event


def only_file(directory: pathlib.Path) -> pathlib.Path:
    [path] = [p for p in directory.iterdir() if "tfevents" in p.name]
    return path


def test_katib_train_test_layout_from_both_writers(tmp_path: pathlib.Path) -> None:
    write_tensorboard(tmp_path / "train", "accuracy", [0.1, 0.5, 1 / 3])
    write_tensorboardx(tmp_path / "test", "accuracy", [0.25, 0.7, 0.9349667])
    stats = ParseStats()
    got = rows(tmp_path, "train/accuracy", "test/accuracy", stats=stats)
    assert got == [
        ("2023-11-14T22:13:20Z", "test/accuracy", "0.25"),
        ("2023-11-14T22:13:21Z", "test/accuracy", "0.7"),
        ("2023-11-14T22:13:22Z", "test/accuracy", "0.9349667"),
        ("2023-11-14T22:13:20Z", "train/accuracy", "0.1"),
        ("2023-11-14T22:13:21Z", "train/accuracy", "0.5"),
        ("2023-11-14T22:13:22Z", "train/accuracy", "0.33333334"),
    ]
    assert stats.values == {"train/accuracy": 3, "test/accuracy": 3}
    assert stats.lines == 8  # each file also starts with a file_version event
    assert not stats.skipped


def test_a_bare_name_matches_the_tag_in_every_directory(tmp_path: pathlib.Path) -> None:
    write_tensorboard(tmp_path / "train", "loss", [2.5])
    write_tensorboardx(tmp_path / "validation", "loss", [3.5])
    assert [(name, value) for _, name, value in rows(tmp_path, "loss")] == [("loss", "2.5"), ("loss", "3.5")]


def test_without_names_every_scalar_is_reported_under_a_name_that_selects_it(tmp_path: pathlib.Path) -> None:
    write_tensorboardx(tmp_path, "lr", [0.001])
    write_tensorboard(tmp_path / "run1" / "train", "accuracy", [0.75])
    found = rows(tmp_path)
    assert [(name, value) for _, name, value in found] == [("lr", "0.001"), ("run1/train/accuracy", "0.75")]
    assert rows(tmp_path, "run1/train/accuracy") == [found[1]]


def test_directories_match_whole_components_and_tags_match_exactly(tmp_path: pathlib.Path) -> None:
    write_tensorboardx(tmp_path / "pretrain", "accuracy", [0.1])
    write_tensorboardx(tmp_path / "train", "accuracy_ema", [0.2])
    write_tensorboardx(tmp_path / "a" / "train", "accuracy", [0.3])
    write_tensorboardx(tmp_path / "other", "train/accuracy", [0.4])  # a tag named like the metric
    got = rows(tmp_path, "train/accuracy")
    assert [value for _, _, value in got] == ["0.3", "0.4"]


def test_files_are_read_in_string_order_of_their_relative_paths(tmp_path: pathlib.Path) -> None:
    for index, relpath in enumerate(
        ["b/events.out.tfevents.1", "a/x/events.out.tfevents.9", "a/events.out.tfevents.2"]
    ):
        target = tmp_path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(framed(scalar_event("m", float(index))))
    (tmp_path / "a" / "1234.pid").write_text("completed\n")  # Katib's marker: not an event file
    assert [value for _, _, value in rows(tmp_path, "m")] == ["2", "1", "0"]


def test_every_numeric_dtype_from_typed_fields_and_tensor_content(tmp_path: pathlib.Path) -> None:
    cases: list[tuple[str, pb.TensorProto, str]] = [
        ("float_val", pb.TensorProto(dtype=pb.DT_FLOAT, float_val=[0.1]), "0.1"),
        ("float_content", pb.TensorProto(dtype=pb.DT_FLOAT, tensor_content=bytes.fromhex("cdcccc3d")), "0.1"),
        ("double_val", pb.TensorProto(dtype=pb.DT_DOUBLE, double_val=[0.1]), "0.1"),
        ("double_content", pb.TensorProto(dtype=pb.DT_DOUBLE, tensor_content=bytes.fromhex("000000000000f03f")), "1"),
        ("half_val", pb.TensorProto(dtype=pb.DT_HALF, half_val=[0x2E66]), "0.1"),
        ("half_content", pb.TensorProto(dtype=pb.DT_HALF, tensor_content=bytes.fromhex("663e")), "1.6"),
        ("bf16_val", pb.TensorProto(dtype=pb.DT_BFLOAT16, half_val=[0x3DCD]), "0.1"),
        ("bf16_content", pb.TensorProto(dtype=pb.DT_BFLOAT16, tensor_content=bytes.fromhex("4940")), "3.14"),
        ("int32_val", pb.TensorProto(dtype=pb.DT_INT32, int_val=[-7]), "-7"),
        ("int32_content", pb.TensorProto(dtype=pb.DT_INT32, tensor_content=bytes.fromhex("feffffff")), "-2"),
        ("int16_val", pb.TensorProto(dtype=pb.DT_INT16, int_val=[-300]), "-300"),
        ("int8_content", pb.TensorProto(dtype=pb.DT_INT8, tensor_content=b"\x80"), "-128"),
        ("uint8_val", pb.TensorProto(dtype=pb.DT_UINT8, int_val=[255]), "255"),
        ("uint16_content", pb.TensorProto(dtype=pb.DT_UINT16, tensor_content=bytes.fromhex("ffff")), "65535"),
        ("int64_val", pb.TensorProto(dtype=pb.DT_INT64, int64_val=[-(2**62)]), str(-(2**62))),
        (
            "int64_content",
            pb.TensorProto(dtype=pb.DT_INT64, tensor_content=(2**40).to_bytes(8, "little")),
            "1099511627776",
        ),
        ("uint32_val", pb.TensorProto(dtype=pb.DT_UINT32, uint32_val=[4_000_000_000]), "4000000000"),
        ("uint64_val", pb.TensorProto(dtype=pb.DT_UINT64, uint64_val=[2**64 - 1]), str(2**64 - 1)),
        ("uint64_content", pb.TensorProto(dtype=pb.DT_UINT64, tensor_content=b"\xff" * 8), str(2**64 - 1)),
        ("e5m2_val", pb.TensorProto(dtype=pb.DT_FLOAT8_E5M2, float8_val=b"\x3e"), "1.5"),
        (
            "e4m3fn_content",
            pb.TensorProto(dtype=pb.DT_FLOAT8_E4M3FN, tensor_content=b"\x7e"),
            "450",
        ),  # 448: shortest that rounds back
        ("shape_1x1", pb.TensorProto(dtype=pb.DT_FLOAT, float_val=[2.5], tensor_shape=_shape(1, 1)), "2.5"),
    ]
    (tmp_path / "events.out.tfevents.1").write_bytes(framed(*(tensor_event(tag, t) for tag, t, _ in cases)))
    stats = ParseStats()
    got = {name: value for _, name, value in rows(tmp_path, *(tag for tag, _, _ in cases), stats=stats)}
    assert got == {tag: text for tag, _, text in cases}
    assert not stats.skipped


def _shape(*sizes: int) -> pb.TensorShapeProto:
    return pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=size) for size in sizes])


def test_values_that_are_not_one_number_are_skipped_and_counted_when_requested(tmp_path: pathlib.Path) -> None:
    events = [
        tensor_event("hist", pb.TensorProto(dtype=pb.DT_FLOAT, float_val=[1, 2, 3], tensor_shape=_shape(3))),
        tensor_event("text", pb.TensorProto(dtype=pb.DT_STRING, string_val=[b"hello"])),
        tensor_event("flag", pb.TensorProto(dtype=pb.DT_BOOL, bool_val=[True])),
        tensor_event("empty", pb.TensorProto(dtype=pb.DT_FLOAT)),
        tensor_event("short", pb.TensorProto(dtype=pb.DT_DOUBLE, tensor_content=b"\x00" * 4)),
        scalar_event("ok", 1.0),
    ]
    (tmp_path / "events.out.tfevents.1").write_bytes(framed(*events))
    stats = ParseStats()
    assert rows(tmp_path, "hist", "text", "flag", "empty", "short", "ok", stats=stats) == [
        ("2023-11-14T22:13:20Z", "ok", "1")
    ]
    assert stats.skipped == {SkipReason.NOT_A_NUMBER: 5}
    assert "3 elements" in stats.first_skips[0].detail and "'hist'" in stats.first_skips[0].detail
    explore = ParseStats()
    assert [name for _, name, _ in rows(tmp_path, stats=explore)] == ["ok"]
    assert not explore.skipped  # histograms and text are simply not metrics when exploring


def test_time_stamps_are_utc_microseconds_rounded_and_trimmed(tmp_path: pathlib.Path) -> None:
    stamps = {
        T0 + 0.1234567: "2023-11-14T22:13:20.123457Z",
        T0 + 0.5: "2023-11-14T22:13:20.5Z",
        T0 + 0.9999996: "2023-11-14T22:13:21Z",
        T0 + 0.12: "2023-11-14T22:13:20.12Z",
        1795355932.9538445: "2026-11-22T13:58:52.953845Z",  # x 1e6 in floating point would give .953844
        0.0: "1970-01-01T00:00:00Z",
        float("nan"): ZERO_TIME,
        1e300: ZERO_TIME,
    }
    events = [scalar_event("t", float(i), wall_time) for i, wall_time in enumerate(stamps)]
    (tmp_path / "events.out.tfevents.1").write_bytes(framed(*events))
    assert [stamp for stamp, _, _ in rows(tmp_path, "t")] == list(stamps.values())


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 to 2100
def test_time_stamps_round_the_exact_wall_time_to_the_nearest_microsecond(wall_time: float) -> None:
    micros = (decimal.Decimal(wall_time) * 1_000_000).to_integral_value(decimal.ROUND_HALF_EVEN)
    second, micro = divmod(int(micros), 1_000_000)
    expected = (datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=second)).isoformat()
    expected += f".{micro:06d}".rstrip("0").rstrip(".") + "Z"
    assert StampFormatter()(wall_time) == expected


def test_a_flipped_byte_loses_one_record_and_is_counted(tmp_path: pathlib.Path) -> None:
    write_tensorboardx(tmp_path, "loss", [1.0, 2.0, 3.0, 4.0])
    path = only_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[data.index(b"loss", data.index(b"loss") + 1) + 2] ^= 0x20  # inside the second scalar event
    path.write_bytes(bytes(data))
    skips: list[Skipped] = []
    stats = ParseStats()
    got = [r.value for r in read_event_dir(tmp_path, spec("loss"), stats, skips.append)]
    assert got == ["1", "3", "4"]
    assert stats.skipped == {SkipReason.BAD_RECORD: 1}
    assert "data CRC mismatch" in skips[0].detail and path.name in skips[0].detail


def test_a_record_with_a_good_crc_that_is_not_an_event_is_skipped(tmp_path: pathlib.Path) -> None:
    out = io.BytesIO()
    writer = RecordWriter(out)
    writer.write(b"\xff\xff\xff")
    writer.write(scalar_event("m", 2.0).SerializeToString())
    (tmp_path / "events.out.tfevents.1").write_bytes(out.getvalue())
    stats = ParseStats()
    assert [value for _, _, value in rows(tmp_path, "m", stats=stats)] == ["2"]
    assert stats.skipped == {SkipReason.BAD_RECORD: 1} and stats.lines == 1


def test_empty_files_and_missing_directories_hold_nothing(tmp_path: pathlib.Path) -> None:
    (tmp_path / "events.out.tfevents.0").write_bytes(b"")
    stats = ParseStats()
    assert rows(tmp_path, "m", stats=stats) == []
    assert rows(tmp_path / "absent", "m", stats=stats) == []
    assert stats.lines == 0 and not stats.skipped


def test_a_one_shot_read_counts_an_incomplete_last_record(tmp_path: pathlib.Path) -> None:
    data = framed(scalar_event("m", 1.0), scalar_event("m", 2.0))
    (tmp_path / "events.out.tfevents.1").write_bytes(data[:-3])
    stats = ParseStats()
    assert [value for _, _, value in rows(tmp_path, "m", stats=stats)] == ["1"]
    assert stats.skipped == {SkipReason.BAD_RECORD: 1}
    assert "incomplete record" in stats.first_skips[0].detail


def _grow(path: pathlib.Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def test_a_record_completed_after_a_poll_is_read_exactly_once(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "source"
    write_tensorboardx(source, "loss", [0.5, 0.25, 0.125])
    complete = only_file(source).read_bytes()
    live = tmp_path / "live"
    live.mkdir()
    target = live / "events.out.tfevents.1.host"
    stats = ParseStats()
    reader = EventDirReader(live, spec("loss"), stats)
    seen: list[MetricLog] = []
    # Cuts inside a header, inside the data and inside the footer, and a few bytes at a time.
    cuts = sorted({5, 30, len(complete) - 2, len(complete) - 1, *range(40, len(complete), 7)})
    previous = 0
    for cut in [*cuts, len(complete)]:
        _grow(target, complete[previous:cut])
        previous = cut
        seen += reader.poll()
    assert [log.value for log in seen] == ["0.5", "0.25", "0.125"]
    assert [log.time_stamp for log in seen] == [f"2023-11-14T22:13:2{i}Z" for i in range(3)]
    assert reader.poll() == [] and reader.pending_bytes == 0
    assert not stats.skipped and stats.values == {"loss": 3}


def test_live_reading_follows_a_directory_that_appears_files_that_appear_and_grow(tmp_path: pathlib.Path) -> None:
    logdir = tmp_path / "logs"
    reader = EventDirReader(logdir, spec("train/accuracy", "test/accuracy"))
    assert reader.poll() == []
    (logdir / "train").mkdir(parents=True)
    first = logdir / "train" / "events.out.tfevents.1"
    first.write_bytes(framed(scalar_event("accuracy", 0.5)))
    assert [(r.name, r.value) for r in reader.poll()] == [("train/accuracy", "0.5")]
    _grow(first, framed(scalar_event("accuracy", 0.75, T0 + 1)))
    (logdir / "test").mkdir()
    (logdir / "test" / "events.out.tfevents.1").write_bytes(framed(scalar_event("accuracy", 0.25)))
    assert [(r.name, r.value) for r in reader.poll()] == [("test/accuracy", "0.25"), ("train/accuracy", "0.75")]
    assert reader.poll() == []


def test_a_live_writer_in_another_thread_is_followed_to_the_end(tmp_path: pathlib.Path) -> None:
    tensorboardx = pytest.importorskip("tensorboardX")
    writer = tensorboardx.SummaryWriter(str(tmp_path), flush_secs=1)
    reader = EventDirReader(tmp_path, spec("loss"))
    values: list[str] = []
    for step in range(50):
        writer.add_scalar("loss", step / 8, step, walltime=T0 + step)
        if step % 10 == 9:
            writer.flush()
            values += [log.value for log in reader.poll()]
    writer.close()
    deadline = time.monotonic() + 10
    while len(values) < 50 and time.monotonic() < deadline:
        values += [log.value for log in reader.poll()]
        time.sleep(0.01)  # polling the reader's output (the condition), not waiting blindly
    assert values == [str(step / 8).removesuffix(".0") for step in range(50)]


@pytest.fixture
def fast_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory in memory (tmpfs) when the machine has one: creating 10,000 files on a loaded disk
    takes longer than reading them, and the reading is what is under test."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    directory = pathlib.Path(tempfile.mkdtemp(prefix="tfevent-test-", dir="/dev/shm"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_ten_thousand_event_files_in_one_directory(fast_dir: pathlib.Path) -> None:
    tmp_path = fast_dir
    count = 10_000
    for index in range(count):
        descriptor = os.open(tmp_path / f"events.out.tfevents.{index:05d}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(descriptor, frame(scalar_event("loss", index / 4, T0 + index).SerializeToString()))
        os.close(descriptor)
    started = time.monotonic()
    stats = ParseStats()
    reader = EventDirReader(tmp_path, spec("loss"), stats)
    got = [r.value for r in reader.poll()]
    elapsed = time.monotonic() - started
    assert got == [str(index / 4).removesuffix(".0") for index in range(count)]
    assert stats.values == {"loss": count}
    assert elapsed < 10, f"reading {count} files took {elapsed:.1f} s"
    assert reader.poll() == []  # unchanged files are not reopened


@pytest.mark.parametrize("new_style", [False, True], ids=["simple_value", "tensor"])
def test_torch_summary_writer_if_installed(tmp_path: pathlib.Path, new_style: bool) -> None:
    tensorboard_module = pytest.importorskip("torch.utils.tensorboard")
    writer = tensorboard_module.SummaryWriter(str(tmp_path / "train"))
    for step, value in enumerate([0.1, 0.2, 0.3]):
        writer.add_scalar("accuracy", value, step, walltime=T0 + step, new_style=new_style)
    writer.close()
    assert rows(tmp_path, "train/accuracy") == [
        ("2023-11-14T22:13:20Z", "train/accuracy", "0.1"),
        ("2023-11-14T22:13:21Z", "train/accuracy", "0.2"),
        ("2023-11-14T22:13:22Z", "train/accuracy", "0.3"),
    ]


def test_reading_event_files_needs_neither_tensorflow_nor_tensorboard_nor_numpy() -> None:
    code = (
        "import sys, parsers.tfevent\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'tensorboard', 'numpy', 'torch'})\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=pathlib.Path(__file__).parents[2])


def test_a_directory_that_cannot_be_listed_is_reported_once(tmp_path: pathlib.Path) -> None:
    unlistable = tmp_path / ("x" * 300)  # ENAMETOOLONG: an OSError other than "does not exist", even for root
    stats = ParseStats()
    reader = EventDirReader(unlistable, spec("m"), stats)
    assert reader.poll() == [] and reader.poll() == []
    assert stats.skipped == {SkipReason.BAD_RECORD: 1}
    assert "cannot list the directory" in stats.first_skips[0].detail
