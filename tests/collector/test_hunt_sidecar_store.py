"""The store when its spill file cannot be created or written (a full volume: /dev/full): rows stay whole
and in order, and a writer waits for a real shipper to take rows instead of growing memory."""

from __future__ import annotations

import errno
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

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
