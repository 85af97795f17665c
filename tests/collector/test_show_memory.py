"""`trials` and `show` read a trial of any length in bounded memory, and draw and count exactly as before.

A store with a trial of 300,000 rows: `trials`, `show` and `show --output json` each stay under 100 MiB (they
held every row: 180+ MiB here, 590 MiB for a million). Each command is the only child of a small launcher,
since a child forked from pytest would start with pytest's peak as its own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector.dbmanager import ObservationStore, TrialInfo, serve
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.table import numeric_series, series_means, sparkline
from tests import peak

ROWS = 300_000


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("show") / "obs.db"
    store = ObservationStore(db)
    try:
        for start in range(0, ROWS, 50_000):
            store.report("big", [MetricLog(f"2026-01-01T00:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}Z",
                                           "loss" if i % 2 else "accuracy", f"{(i % 1000) / 1000:.3f}")
                                 for i in range(start, start + 50_000)])
        store.record_trial(TrialInfo("big", "2026-01-01T00:00:00Z", ("accuracy", "loss"), "maximize",
                                     {"accuracy": "max", "loss": "min"}))
    finally:
        store.close()
    return db


def measured(tmp_path: Path, *args: str) -> tuple[str, float]:
    run = peak.measured(tmp_path, *args)
    assert run.code == 0, run.stderr
    return run.stdout, run.peak_mib


def test_trials_and_show_hold_one_batch_of_rows(tmp_path: Path, big_store: Path) -> None:
    listed, trials_mib = measured(tmp_path, "trials", "--db", str(big_store))
    assert listed.splitlines()[1].split()[:6] == ["big", "2026-01-01", "00:00:00", str(ROWS), "accuracy", "max"]
    table, show_mib = measured(tmp_path, "show", "big", "--db", str(big_store))
    assert [line.split()[:7] for line in table.splitlines()[1:]] == [
        ["accuracy", "max", "0.998", "0.000", "0.998", "0.998", str(ROWS // 2)],
        ["loss", "min", "0.001", "0.001", "0.999", "0.999", str(ROWS // 2)]]
    document, json_mib = measured(tmp_path, "show", "big", "--db", str(big_store), "--output", "json")
    parsed = json.loads(document)
    assert len(parsed["metric_logs"]) == ROWS and parsed["trial_name"] == "big"
    assert parsed["metric_logs"][-1] == {"time_stamp": "2026-01-01T00:49:59.99Z",
                                         "metric": {"name": "loss", "value": "0.999"}}
    assert max(trials_mib, show_mib, json_mib) < 100, (trials_mib, show_mib, json_mib)


rows_strategy = st.lists(st.tuples(st.sampled_from(["loss", "acc", "lr"]),
                                   st.one_of(st.integers(-50, 50).map(str), st.floats(allow_nan=False).map(repr),
                                             st.sampled_from(["inf", "-Inf", "NaN", "nope", "1e400", ""]))),
                         max_size=300)


@settings(max_examples=300, deadline=None)
@given(rows_strategy, st.integers(1, 20))
def test_streamed_shares_are_what_sparkline_cut_from_every_number(pairs: list[tuple[str, str]], width: int) -> None:
    """The oracle: the old way, every number of the metric in a list, cut into shares by `sparkline` itself."""
    rows = [MetricLog("2026-01-01T00:00:00Z", name, value) for name, value in pairs]
    means = series_means(rows, width)
    for name in ("loss", "acc", "lr"):
        numbers = numeric_series(rows, name)
        if len(numbers) > width:
            step = len(numbers) / width
            numbers = [sum(part) / len(part) for part in
                       (numbers[int(i * step): max(int((i + 1) * step), int(i * step) + 1)] for i in range(width))]
        got = means.get(name, [])
        assert len(got) == len(numbers)
        assert all(a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300) or not math.isfinite(a + b)
                   for a, b in zip(got, numbers, strict=True))


def test_integer_shares_draw_the_same_bars_as_before() -> None:
    rows = [MetricLog("2026-01-01T00:00:00Z", "loss", str((i * 7919) % 101)) for i in range(1000)]
    assert sparkline(series_means(rows)["loss"]) == sparkline(numeric_series(rows, "loss"))


def test_series_means_refuses_an_iterator() -> None:
    with pytest.raises(TypeError, match="not an iterator"):
        series_means(iter([MetricLog("2026-01-01T00:00:00Z", "loss", "1")]))


def test_resend_sends_a_long_trial_a_batch_at_a_time(tmp_path: Path, big_store: Path) -> None:
    """`show --resend` read the whole trial into one list; now one batch is held, and every row arrives once."""
    server = serve("127.0.0.1:0", tmp_path / "remote.db")
    try:
        said, mib = measured(tmp_path, "show", "big", "--db", str(big_store), "--resend", server.address)
        assert said == f"trial big: {ROWS} rows sent to db-manager {server.address}\n"
        assert server.store.row_count("big") == ROWS
    finally:
        server.stop(grace=1)
    assert mib < 100, f"peak RSS {mib:.0f} MiB"
