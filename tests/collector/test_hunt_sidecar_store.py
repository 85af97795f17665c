"""The store when its spill file cannot be created or written (a full volume: /dev/full): rows stay whole
and in order, and a writer waits for a real shipper to take rows instead of growing memory."""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector import store as store_module
from katib_metrics.collector.shipper import Shipper
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from tests.collector.grpc_doubles import RecordingDBManager, start_server

SPEC = CollectorSpec(("loss",))


def rows(start: int, stop: int) -> list[MetricLog]:
    return [MetricLog("2024-01-01T00:00:00Z", "loss", str(i)) for i in range(start, stop)]


def full_volume() -> BinaryIO:
    return open("/dev/full", "w+b", buffering=0)  # the store owns and closes it


def test_a_spill_file_on_a_full_volume_keeps_every_row_in_order(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    store = MetricStore(SPEC, memory_rows=100, spill_dir=tmp_path)
    monkeypatch.setattr(store, "_open_spill", full_volume)
    for start in range(0, 1000, 50):
        store.add(rows(start, start + 50))  # no reporter: nothing waits, every row stays in memory
    taken = store.take(300)
    assert [row.value for row in taken + list(store.all_rows())] == [str(i) for i in range(1000)]
    store.close()


def test_without_a_spill_file_the_writer_waits_for_a_real_shipper(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> BinaryIO:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    store = MetricStore(SPEC, memory_rows=200)
    servicer = RecordingDBManager()
    server, address = start_server(servicer)
    shipper = Shipper(store, "trial-held", address, threshold=5000, interval=60).start()  # waits for the store
    most = 0

    def write() -> None:
        nonlocal most
        for start in range(0, 20_000, 100):
            store.add(rows(start, start + 100))
            most = max(most, len(store._rows))

    writer = threading.Thread(target=write)
    try:
        writer.start()
        writer.join(60)
        assert not writer.is_alive(), "the writer was never let go on"
        done = shipper.finish(budget=30)
    finally:
        server.stop(None)
        store.close()
    assert most < 200 + 100  # one batch beyond `memory_rows` at most
    assert [value for _, _, value in servicer.all_rows()] == [str(i) for i in range(20_000)]
    assert done.rows == 20_000


class _FillingVolume:
    """`os` for the store, whose `pwrite` writes what `room` allows (a short write), then fails with ENOSPC."""

    def __init__(self, room: list[int]) -> None:
        self.room = room  # bytes each successive write may still put down (then: unlimited)

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        if not self.room:
            return os.pwrite(fd, data, offset)
        allowed = self.room.pop(0)
        if allowed <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.pwrite(fd, data[:allowed], offset)

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(room=st.lists(st.integers(0, 3000), max_size=12),
       steps=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 60)), min_size=1, max_size=30))
def test_short_and_failed_spill_writes_never_lose_reorder_or_corrupt_rows(room: list[int],
                                                                          steps: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as spill_dir:
        store = MetricStore(SPEC, memory_rows=25, spill_dir=Path(spill_dir))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store_module, "os", _FillingVolume(list(room)))
            patch.setattr(store_module, "SPILL_RETRY", 0.0)  # try the spill file again at every chance
            added, taken = 0, []
            for count, take in steps:
                store.add(rows(added, added + count))
                added += count
                taken += store.take(take)
            rest = list(store.all_rows())
        store.close()
    assert [row.value for row in taken + rest] == [str(i) for i in range(added)]


def test_no_usable_temporary_directory_at_all_keeps_rows_instead_of_raising(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    """A read-only root: tempfile finds no usable directory and raises from `gettempdir()` itself."""
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path / "gone")])
    monkeypatch.setattr(tempfile, "tempdir", None)
    store = MetricStore(SPEC, memory_rows=2, spill_dir=tmp_path / "no-such-volume")
    store.add(rows(0, 5))
    store.add(rows(5, 9))
    assert [row.value for row in store.take(3) + list(store.all_rows())] == [str(i) for i in range(9)]
    store.close()
