"""The diagnosis's look at an input that gave nothing never blocks: a FIFO without a writer and a device are
not read (the sidecar's exit waited on them), a regular file is."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from katib_metrics.parsers.input_checks import input_warnings
from katib_metrics.parsers.model import FileFormat


def warnings_within(path: str, seconds: float = 5.0) -> list[str]:
    found: list[list[str]] = []
    worker = threading.Thread(target=lambda: found.append(input_warnings(path, FileFormat.TEXT, found_any=False)),
                              daemon=True)
    worker.start()
    worker.join(seconds)
    assert found, f"input_warnings({path}) blocked"
    return found[0]


def test_a_fifo_without_a_writer_and_a_device_are_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "metrics.log"
    os.mkfifo(fifo)
    warnings_within(str(fifo))
    zero = tmp_path / "zero.log"
    zero.symlink_to("/dev/zero")
    warnings_within(str(zero))


def test_a_regular_file_is_still_looked_at(tmp_path: Path) -> None:
    binary = tmp_path / "metrics.log"
    binary.write_bytes(b"\0\0\0binary")
    assert any("binary" in warning for warning in warnings_within(str(binary)))
