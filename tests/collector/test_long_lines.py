"""A progress bar's megabyte line through `parse` and `run`: bounded peak RSS, every update counted.

Each command runs as the only child of a fresh Python process that reports `getrusage(RUSAGE_CHILDREN)`'s
`ru_maxrss`: the peak RSS of the collector process itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIMIT_KIB = 100 * 1024
UPDATE = "\rEpoch 1:  12%|####      | {i}/70000 [00:04<00:05, 98.1it/s, loss={v}]"
MEASURE = (
    "import json, os, resource, subprocess\n"
    "done = subprocess.run(json.loads(os.environ['MEASURED']), stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
    "print(json.dumps([done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
    "                  done.stdout.decode(errors='replace')[-4000:], done.stderr.decode(errors='replace')[-4000:]]))\n"
)


def value(i: int) -> str:
    return f"{1 + i / 1e6:.6f}"


def progress_bar(path: Path, size: int) -> int:
    """One `\\r`-separated line of about `size` bytes, no newline; returns the number of updates."""
    updates, written = 0, 0
    with path.open("w") as out:
        while written < size:
            chunk = "".join(UPDATE.format(i=i, v=value(i)) for i in range(updates, updates + 10_000))
            out.write(chunk)
            written += len(chunk)
            updates += 10_000
    return updates


def measured(*command: str) -> tuple[int, int, str, str]:
    """(exit status, peak RSS in KiB, stdout's end, stderr's end) of `command` run alone in a fresh child."""
    # The command goes through the environment: in argv, the sidecar would take this process for the training.
    done = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, timeout=600, check=True,
                          env={**os.environ, "MEASURED": json.dumps(command)})
    status, rss, out, err = json.loads(done.stdout)
    return status, rss, out, err


@pytest.fixture(scope="module")
def bar5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("bars") / "tqdm5.log"
    return path, progress_bar(path, 5_000_000)


@pytest.fixture(scope="module")
def bar50(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("bars") / "tqdm50.log"
    return path, progress_bar(path, 50_000_000)


KATIB = [sys.executable, "-m", "katib_metrics"]


def check_parse(bar: tuple[Path, int]) -> None:
    path, updates = bar
    status, rss, out, err = measured(*KATIB, "parse", "-m", "loss", "--output", "json", str(path))
    assert status == 0, err
    assert rss <= LIMIT_KIB, f"peak RSS {rss} KiB"
    assert f"1 lines/records read, {updates} values recorded" in err
    assert f'"latest": "{value(updates - 1)}"' in out


def test_parse_a_5_mb_progress_bar_line(bar5: tuple[Path, int]) -> None:
    check_parse(bar5)


@pytest.mark.slow
def test_parse_a_50_mb_line_without_newline(bar50: tuple[Path, int]) -> None:
    check_parse(bar50)


def check_run(bar: tuple[Path, int], tmp_path: Path) -> None:
    path, updates = bar
    status, rss, out, err = measured(*KATIB, "run", "--db", str(tmp_path / "o.db"), "-m", "loss", "--", "cat",
                                     str(path))
    assert status == 0, err
    assert rss <= LIMIT_KIB, f"peak RSS {rss} KiB"
    row = next(line.split() for line in out.splitlines() if line.startswith("loss "))
    assert row[-1] == str(updates) and row[-2] == value(updates - 1)  # COUNT and LATEST


def test_run_a_5_mb_progress_bar_line(bar5: tuple[Path, int], tmp_path: Path) -> None:
    check_run(bar5, tmp_path)


@pytest.mark.slow
def test_run_a_50_mb_line_without_newline(bar50: tuple[Path, int], tmp_path: Path) -> None:
    check_run(bar50, tmp_path)


def check_sidecar(bar: tuple[Path, int], tmp_path: Path) -> None:
    from katib_metrics.collector.dbmanager import serve
    from katib_metrics.collector.report import get_observation_log

    path, updates = bar
    logs = tmp_path / "logs"
    logs.mkdir()
    os.symlink(path, logs / "metrics.log")
    (logs / "7.pid").write_text("completed\n")  # the training ended before the sidecar started: read it all now
    server = serve("127.0.0.1:0", tmp_path / "db.sqlite")
    try:
        status, rss, _, err = measured(sys.executable, "-m", "katib_metrics", "collect", "-t", "bar", "-m", "loss",
                                       "-s-db", server.address, "-path", str(logs / "metrics.log"))
        assert status == 0, err
        rows = get_observation_log(server.address, "bar", timeout=60)
    finally:
        server.stop(grace=1)
    assert rss < LIMIT_KIB, f"sidecar peak RSS {rss // 1024} MiB"
    assert [row.value for row in rows] == [value(i) for i in range(updates)]


def test_sidecar_a_5_mb_progress_bar_line(bar5: tuple[Path, int], tmp_path: Path) -> None:
    check_sidecar(bar5, tmp_path)


@pytest.mark.slow
def test_sidecar_a_50_mb_line_without_newline(bar50: tuple[Path, int], tmp_path: Path) -> None:
    check_sidecar(bar50, tmp_path)
