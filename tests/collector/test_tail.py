"""Following a metrics file: partial lines, truncation, rotation, a file that appears late, bounded reads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from katib_metrics.collector.sources.tail import FileTail, WatchedTail
from katib_metrics.parsers.lines import decode_line


def lines(tail: FileTail) -> list[str]:
    """Every block read until nothing new is complete, split into lines (each block ends with a newline)."""
    got: list[str] = []
    while block := tail.read():
        assert block.endswith(b"\n")
        got.extend(decode_line(raw) for raw in block[:-1].split(b"\n"))
    return got


def test_missing_file_then_lines_then_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    tail = FileTail(path)
    assert lines(tail) == []
    with path.open("ab", buffering=0) as out:
        out.write(b"epoch=1 loss=0.5\nepoch=2 lo")
        assert lines(tail) == ["epoch=1 loss=0.5"]
        out.write(b"ss=0.4\r\nepoch=3")
        assert lines(tail) == ["epoch=2 loss=0.4"]
        assert lines(tail) == []
    assert tail.flush() == b"epoch=3"
    assert tail.flush() == b""


def test_truncation_starts_over_and_keeps_the_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_bytes(b"a=1\nb=2\npartial")
    tail = FileTail(path)
    assert lines(tail) == ["a=1", "b=2"]
    path.write_bytes(b"c=3\n")  # truncated and rewritten shorter
    assert lines(tail) == ["partial", "c=3"]
    assert tail.truncations == 1


def test_rename_rotation_drains_the_old_file_first(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    old = path.open("ab", buffering=0)
    old.write(b"a=1\n")
    tail = FileTail(path)
    assert lines(tail) == ["a=1"]
    old.write(b"a=2\n")
    os.rename(path, tmp_path / "metrics.log.1")
    assert lines(tail) == ["a=2"]  # moved away, not recreated yet: nothing lost, nothing more
    path.write_bytes(b"b=1\n")
    assert lines(tail) == ["b=1"]
    assert tail.rotations == 1
    old.close()


def test_replacement_by_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_bytes(b"a=1\nhalf")
    tail = FileTail(path)
    assert lines(tail) == ["a=1"]
    fresh = tmp_path / "new"
    fresh.write_bytes(b"b=1\nb=2\n")
    os.replace(fresh, path)
    assert lines(tail) == ["half", "b=1", "b=2"]


def test_reads_are_bounded_and_long_lines_are_cut_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_bytes(b"x" * 100 + b"\n" + b"y=1\n" * 1000)
    tail = FileTail(path, max_read=64, max_line=40)
    assert tail.read() == b"x" * 64  # a runaway line goes on in pieces without a newline (parsers.longline)
    got = lines(tail)
    assert got[0] == "x" * 36
    assert got[1:] == ["y=1"] * 1000


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_bytes(b"loss=\xff0.5\n")
    assert lines(FileTail(path)) == ["loss=\ufffd0.5"]


@pytest.mark.parametrize("force_polling", [False, True])
def test_wait_wakes_when_the_file_appears(tmp_path: Path, force_polling: bool) -> None:
    path = tmp_path / "sub" / "metrics.log"
    source = WatchedTail(path, poll_interval=0.05, force_polling=force_polling)
    try:
        assert source.read() == b""
        def create() -> None:
            path.parent.mkdir()
            path.write_bytes(b"a=1\n")

        writer = threading.Timer(0.1, create)
        writer.start()
        deadline = time.monotonic() + 10
        got = b""
        while not got and time.monotonic() < deadline:
            source.wait(1.0)
            got = source.read()
        writer.join()
        assert got == b"a=1\n"
    finally:
        source.close()


def test_inotify_wakes_a_long_wait_early(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_bytes(b"")
    source = WatchedTail(path)
    try:
        source.wait(0.01)  # starts the watch
        assert source.watcher.watching
        threading.Timer(0.1, lambda: path.write_bytes(b"a=1\n")).start()
        start = time.monotonic()
        got = b""
        while not got and time.monotonic() - start < 10.0:  # the open(O_TRUNC) may wake us before the write
            source.wait(20.0)
            got = source.read()
        assert time.monotonic() - start < 10.0
        assert got == b"a=1\n"
    finally:
        source.close()


def test_wake_ends_a_wait(tmp_path: Path) -> None:
    source = WatchedTail(tmp_path / "never.log")
    try:
        threading.Timer(0.1, source.wake).start()
        start = time.monotonic()
        source.wait(20.0)
        assert time.monotonic() - start < 10.0
    finally:
        source.close()


def test_a_file_rewritten_in_place_every_epoch_is_read_each_time(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    tail, got = FileTail(path), []
    for epoch in range(5):  # open(path, "w") every epoch: same inode, same size
        with path.open("w") as out:
            out.write(f"epoch={epoch} accuracy=0.{epoch}\n")
        got += lines(tail)
    assert got == [f"epoch={e} accuracy=0.{e}" for e in range(5)]
    assert tail.rewrites == 4


def test_copytruncate_then_a_burst_larger_than_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_text("".join(f"value={i}\n" for i in range(200)))
    tail = FileTail(path)
    got = lines(tail)
    os.truncate(path, 0)
    with path.open("a") as out:
        out.write("".join(f"value={i}\n" for i in range(200, 600)))
    got += lines(tail)
    assert got == [f"value={i}" for i in range(600)]


def test_a_same_size_change_between_the_windows_is_found_at_flush(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_text("a=1\nb=2\nc=3\n")
    tail = FileTail(path, full_check=0, window=4)
    assert lines(tail) == ["a=1", "b=2", "c=3"]
    path.write_text("a=1\nb=7\nc=3\n")  # first and last 4 bytes unchanged
    assert lines(tail) == []
    assert tail.flush() == b""
    assert lines(tail) == ["b=7"]  # read again; a=1 and c=3 were handed over at the same offsets
    assert tail.repeats == 2
