"""A live event directory whose files are deleted and written again under the same name: every new file's
rows are read from its start, a file replaced by a longer copy of itself (a sync tool's rename) is not."""

from __future__ import annotations

import os
from pathlib import Path

from katib_metrics.collector.sources.eventdir import EventDirSource
from katib_metrics.parsers.model import CollectorSpec
from tests.parsers.test_tfevent import framed, scalar_event

NAME = "events.out.tfevents.1700000000.host.1.0"


def events(*values: float, wall_time: float = 1_700_000_000.0) -> bytes:
    return framed(*(scalar_event("loss", value, wall_time=wall_time + step, step=step)
                    for step, value in enumerate(values)))


def drain(source: EventDirSource) -> list[str]:
    values: list[str] = []
    while batch := source.read():
        values += [row.value for row in batch]
    return values


def test_an_event_file_deleted_and_written_again_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "train" / NAME
    path.parent.mkdir()
    source = EventDirSource(tmp_path, CollectorSpec(("train/loss",)))
    path.write_bytes(events(0, 1, 2, 3, 4))
    assert drain(source) == ["0", "1", "2", "3", "4"]
    path.unlink()
    assert drain(source) == []
    path.write_bytes(events(10, 11, wall_time=1_800_000_000.0))  # shorter than what was read
    assert drain(source) == ["10", "11"]
    path.unlink()
    path.write_bytes(events(20, 21, 22, 23, 24, 25, 26, wall_time=1_900_000_000.0))  # longer
    assert drain(source) == ["20", "21", "22", "23", "24", "25", "26"]
    assert not source.reader.stats.skipped
    source.close()


def test_an_event_file_replaced_by_a_longer_copy_of_itself_is_read_on_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / NAME
    source = EventDirSource(tmp_path, CollectorSpec(("loss",)))
    path.write_bytes(events(0, 1, 2))
    assert drain(source) == ["0", "1", "2"]
    copy = tmp_path / ".sync-tmp"
    copy.write_bytes(events(0, 1, 2, 3, 4))
    os.replace(copy, path)
    assert drain(source) == ["3", "4"]
    source.close()
