"""Sources → parser → store: live timestamps, the final drain, spilling, and the unavailable row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from katib_metrics.collector.pipeline import ParsedLines, Pipeline
from katib_metrics.collector.sources.tail import WatchedTail
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricLog, ObjectiveType
from katib_metrics.parsers.stats import ParseStats

SPEC = CollectorSpec(("accuracy", "loss"), (), FileFormat.TEXT, ObjectiveType.MAXIMIZE)
READ_AT = 1_750_000_000.25  # 2025-06-15T15:06:40.25Z


def pipeline_for(path: Path, spec: CollectorSpec = SPEC, **store_options: object) -> Pipeline:
    stats = ParseStats()
    parser = make_line_parser(spec, stats=stats)
    source = ParsedLines(WatchedTail(path, poll_interval=0.05), parser, clock=lambda: READ_AT)
    store = MetricStore(spec, stats=stats, **store_options)  # type: ignore[arg-type]
    return Pipeline(source, store, idle_wait=0.5)


def test_live_lines_get_the_read_time_and_the_last_line_is_flushed_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    pipeline = pipeline_for(path).start()
    with path.open("a", encoding="utf-8") as out:
        out.write("2024-03-04T01:55:08Z accuracy=0.5\nepoch 1 loss=0.9 accuracy=0.6\n")
        out.flush()
        assert pipeline.wait_for(lambda s: s.row_count == 3, timeout=10)
        out.write("noise\naccuracy=0.7")  # unterminated: waits for its newline until the true end
        out.flush()
        assert pipeline.wait_for(lambda s: s.stats.lines >= 3, timeout=10)
        assert pipeline.store.row_count == 3
    assert pipeline.stop(timeout=10)
    assert list(pipeline.store.all_rows()) == [
        MetricLog("2024-03-04T01:55:08Z", "accuracy", "0.5"),
        MetricLog("2025-06-15T15:06:40.25Z", "loss", "0.9"),
        MetricLog("2025-06-15T15:06:40.25Z", "accuracy", "0.6"),
        MetricLog("2025-06-15T15:06:40.25Z", "accuracy", "0.7"),
    ]
    summary = {s.name: s for s in pipeline.store.summaries()}
    assert (summary["accuracy"].max, summary["accuracy"].latest, summary["accuracy"].count) == ("0.7", "0.7", 3)
    assert pipeline.store.lines_read() == 4


def test_missing_objective_adds_one_unavailable_row_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_text("loss=0.3\n")
    pipeline = pipeline_for(path)
    pipeline.stop()  # without start(): one synchronous pass to the true end
    assert list(pipeline.store.all_rows()) == [
        MetricLog("2025-06-15T15:06:40.25Z", "loss", "0.3"),
        MetricLog("0001-01-01T00:00:00Z", "accuracy", "unavailable"),
    ]


def test_rows_beyond_memory_spill_to_disk_in_order(tmp_path: Path) -> None:
    path = tmp_path / "metrics.log"
    path.write_text("".join(f"accuracy={i} loss={i / 2}\n" for i in range(12_345)))
    pipeline = pipeline_for(path, memory_rows=1000, spill_dir=tmp_path)
    pipeline.stop()
    store = pipeline.store
    assert store.row_count == 24_690 and store.total_rows() == 24_690
    chunks = list(store.chunks(5000))
    assert [len(c) for c in chunks] == [5000] * 4 + [4690]
    rows = [row for chunk in chunks for row in chunk]
    assert rows[0] == MetricLog("2025-06-15T15:06:40.25Z", "accuracy", "0")
    assert rows[-1] == MetricLog("2025-06-15T15:06:40.25Z", "loss", "6172.0")
    assert [r.value for r in rows[::2]] == [str(i) for i in range(12_345)]
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.log"]  # the spill file is unlinked
    store.close()


def test_json_lines_and_skips_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"accuracy": "0.5", "timestamp": 1638422847.28721}\nnot json\n{"loss": "abc"}\n')
    spec = CollectorSpec(("accuracy", "loss"), (), FileFormat.JSON)
    pipeline = pipeline_for(path, spec)
    pipeline.stop()
    assert list(pipeline.store.all_rows()) == [MetricLog("2021-12-02T05:27:27.28721Z", "accuracy", "0.5")]
    assert pipeline.store.values_skipped() == {"invalid_json": 1, "not_a_number": 1}


def test_stop_wakes_an_idle_pipeline_promptly(tmp_path: Path) -> None:
    pipeline = pipeline_for(tmp_path / "metrics.log")
    pipeline.idle_wait = 60.0
    pipeline.start()
    stopped = threading.Event()
    assert pipeline.stop(timeout=10)
    stopped.set()
    assert pipeline.error is None


def test_spilled_rows_with_tabs_and_line_breaks_come_back_intact(tmp_path: Path) -> None:
    spec = CollectorSpec()
    store = MetricStore(spec, memory_rows=2, spill_dir=tmp_path)
    odd = [MetricLog("0001-01-01T00:00:00Z", "a\tb", "1"), MetricLog("2024-01-01T00:00:00Z", "c\nd", "2"),
           MetricLog("2024-01-01T00:00:00Z", "e\rf", "3"), MetricLog("2024-01-01T00:00:00Z", "ü", "NaN")]
    store.add(odd[:2])
    store.add(odd[2:])
    assert list(store.all_rows()) == odd
    assert list(store.all_rows()) == odd  # reading back twice: the spill file is re-read from its start
    store.close()


class BusySource:
    """A source that always has a new batch: counts reads and waits (a file being written continuously)."""

    def __init__(self) -> None:
        self.reads = self.waits = 0
        self._fresh = True

    def read(self) -> list[MetricLog]:
        self.reads += 1
        self._fresh = not self._fresh  # one batch per drain, then "nothing more for now"
        return [] if self._fresh else [MetricLog("2024-03-04T01:55:08Z", "loss", str(self.reads))]

    def flush(self) -> list[MetricLog]:
        return []

    def wait(self, timeout: float) -> None:
        self.waits += 1

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_busy_source_is_read_at_the_settle_cadence_without_consulting_its_watch() -> None:
    source = BusySource()
    began = time.monotonic()
    pipeline = Pipeline(source, MetricStore(SPEC), settle=0.1).start()
    try:
        assert pipeline.wait_for(lambda s: s.row_count >= 6, timeout=20)
        elapsed = time.monotonic() - began
    finally:
        assert pipeline.stop(timeout=10)
    assert elapsed >= 0.45  # six batches, five settles of 0.1 s between them (a busy loop takes microseconds)
    assert source.waits == 0
