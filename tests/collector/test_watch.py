"""The lazily read inotify watch: wakes on changes, costs nothing per write while the file is busy, re-arms."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from katib_metrics.collector.sources.inotify import InotifyWatcher, inotify_available
from katib_metrics.collector.sources.watch import DirWatcher, watch_directory

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not inotify_available(), reason="inotify is Linux-only"),
]


def waited(watcher: InotifyWatcher, timeout: float) -> float:
    start = time.monotonic()
    watcher.wait(timeout)
    return time.monotonic() - start


def test_a_write_ends_a_long_wait(tmp_path: Path) -> None:
    watcher = InotifyWatcher(tmp_path)
    try:
        watcher.wait(0)  # places the watch
        assert watcher.watching
        threading.Timer(0.05, (tmp_path / "metrics.log").write_text, args=("a=1\n",)).start()
        assert waited(watcher, 20.0) < 10.0
    finally:
        watcher.close()


def test_thousands_of_writes_are_one_wake_up(tmp_path: Path) -> None:
    watcher = InotifyWatcher(tmp_path)
    try:
        watcher.wait(0)
        with (tmp_path / "metrics.log").open("a") as out:
            for i in range(5000):
                out.write(f"step={i}\n")
                out.flush()
        assert waited(watcher, 10.0) < 5.0  # the change is seen...
        assert waited(watcher, 0.3) >= 0.3  # ...and every event of it was consumed by that one wait
    finally:
        watcher.close()


def test_a_directory_that_appears_later_is_polled_then_watched(tmp_path: Path) -> None:
    directory = tmp_path / "later"
    watcher = InotifyWatcher(directory, poll_interval=0.05)
    try:
        assert waited(watcher, 20.0) < 5.0  # polled: the poll interval bounds the wait
        assert not watcher.watching
        directory.mkdir()
        watcher.wait(0)
        assert watcher.watching
        threading.Timer(0.05, (directory / "m.log").write_text, args=("x\n",)).start()
        assert waited(watcher, 20.0) < 10.0
    finally:
        watcher.close()


def test_a_removed_directory_is_watched_again_once_recreated(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    watcher = InotifyWatcher(directory, poll_interval=0.05)
    try:
        watcher.wait(0)
        assert watcher.watching
        directory.rmdir()
        deadline = time.monotonic() + 10
        while watcher.watching and time.monotonic() < deadline:
            watcher.wait(0.1)  # reads the removal (IN_IGNORED)
        assert not watcher.watching
        directory.mkdir()
        watcher.wait(0)
        assert watcher.watching
        threading.Timer(0.05, (directory / "m.log").write_text, args=("x\n",)).start()
        assert waited(watcher, 20.0) < 10.0
    finally:
        watcher.close()


def test_wake_ends_a_wait_and_close_is_final(tmp_path: Path) -> None:
    watcher = InotifyWatcher(tmp_path)
    threading.Timer(0.05, watcher.wake).start()
    assert waited(watcher, 20.0) < 10.0
    watcher.close()
    watcher.close()
    assert waited(watcher, 20.0) < 1.0  # a closed watch never sleeps


def test_the_descriptor_is_not_inherited_by_the_training(tmp_path: Path) -> None:
    watcher = InotifyWatcher(tmp_path)
    try:
        assert not os.get_inheritable(watcher._fd)
    finally:
        watcher.close()


def test_watch_directory_prefers_inotify_and_honours_force_polling(tmp_path: Path) -> None:
    inotify, polling = watch_directory(tmp_path), watch_directory(tmp_path, force_polling=True)
    try:
        assert isinstance(inotify, InotifyWatcher) and isinstance(polling, DirWatcher)
    finally:
        inotify.close()
        polling.close()


def test_without_inotify_watchdogs_observer_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("katib_metrics.collector.sources.watch.inotify_available", lambda: False)
    watcher = watch_directory(tmp_path, poll_interval=0.05)
    try:
        assert isinstance(watcher, DirWatcher)
        watcher.wait(0)  # starts the Observer
        threading.Timer(0.05, (tmp_path / "m.log").write_text, args=("x\n",)).start()
        start = time.monotonic()
        watcher.wait(20.0)
        assert time.monotonic() - start < 10.0
    finally:
        watcher.close()
