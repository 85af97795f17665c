"""Event directories of a million events or ten thousand files: `parse` and `run` keep peak RSS bounded.

The bytes come from tensorboard's own writer (a thousand events, repeated as whole files are). Each
command runs as users run it, as the only child of a fresh small Python process that reports
`RUSAGE_CHILDREN`'s peak RSS (a child forked straight from this big test process would inherit our
RSS as its starting peak: Linux keeps the high-water mark across exec). Before issue #11 `parse`
kept every row: 366 MB for a million events with `--output table`, 516 MB with json.
"""

from __future__ import annotations

import json
import pathlib

import pytest
from tensorboard.summary import Writer

from tests import peak

LIMIT_MIB = 100
T0 = 1_700_000_000.0
def writer_bytes(tmp: pathlib.Path, events: int) -> bytes:
    """The file tensorboard's Writer produces for `events` v2 scalar summaries of `loss`."""
    writer = Writer(str(tmp))
    for step in range(events):
        writer.add_scalar("loss", 1.0 / (step + 1), step, wall_time=T0 + step)
    writer.close()
    [path] = [p for p in tmp.iterdir() if "tfevents" in p.name]
    return path.read_bytes()


def measured(tmp: pathlib.Path, *args: str) -> tuple[str, float]:
    """stdout and peak RSS (MiB) of `katib-metrics ARGS`, run in its own process."""
    run = peak.measured(tmp, *args)
    assert run.code == 0, run.stderr
    return run.stdout, run.peak_mib


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return writer_bytes(tmp_path_factory.mktemp("writer"), 1000)


def one_file(directory: pathlib.Path, content: bytes, copies: int) -> pathlib.Path:
    directory.mkdir()
    with (directory / "events.out.tfevents.1700000000.host").open("wb") as file:
        for _ in range(copies):
            file.write(content)
    return directory


def test_a_million_events_in_one_file_as_a_table(tmp_path: pathlib.Path, thousand: bytes) -> None:
    events = one_file(tmp_path / "events", thousand, 1000)
    out, peak = measured(tmp_path, "parse", "-m", "loss", "--output", "table", str(events))
    assert out.splitlines()[1].split()[-1] == "1000000"  # COUNT: every event read
    assert peak <= LIMIT_MIB, f"peak RSS {peak:.0f} MiB"


def test_json_rows_stream_out_instead_of_piling_up(tmp_path: pathlib.Path, thousand: bytes) -> None:
    events = one_file(tmp_path / "events", thousand, 300)  # 300,000 rows would be about 150 MB kept
    out, peak = measured(tmp_path, "parse", "-m", "loss", "--output", "json", str(events))
    logs = json.loads(out)["metric_logs"]
    assert len(logs) == 300_000
    assert logs[1] == {"time_stamp": "2023-11-14T22:13:21Z", "metric": {"name": "loss", "value": "0.5"}}
    assert peak <= LIMIT_MIB, f"peak RSS {peak:.0f} MiB"


def test_ten_thousand_small_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "writer").mkdir()
    small = writer_bytes(tmp_path / "writer", 3)
    root = tmp_path / "runs"
    for run in range(100):
        directory = root / f"run{run:03}"
        directory.mkdir(parents=True)
        for index in range(100):
            (directory / f"events.out.tfevents.{1700000000 + index}.host").write_bytes(small)
    out, peak = measured(tmp_path, "parse", "-m", "loss", "--output", "table", str(root))
    assert out.splitlines()[1].split()[-1] == "30000"
    assert peak <= LIMIT_MIB, f"peak RSS {peak:.0f} MiB"


def test_run_stores_a_quarter_million_events_in_bounded_memory(tmp_path: pathlib.Path, thousand: bytes) -> None:
    events = one_file(tmp_path / "events", thousand, 250)
    db = tmp_path / "observations.db"
    out, peak = measured(tmp_path, "run", "--db", str(db), "-m", "loss", "--tfevent-dir", str(events), "--", "true")
    assert "250000 rows stored" in out
    assert peak <= LIMIT_MIB, f"peak RSS {peak:.0f} MiB"
