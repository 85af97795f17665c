"""`katib-metrics trials` and `show`: the local store read back, a db-manager through gRPC, the plots' files."""

from __future__ import annotations

import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector.dbmanager import ObservationStore, TrialInfo, serve
from katib_metrics.collector.show_cli import main as show
from katib_metrics.collector.trials_cli import main as trials
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.table import ASCII_BARS, BARS, sparkline

pytestmark = pytest.mark.timeout(60)


def _stamp(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}Z"


def _store(db: Path, name: str, accuracy: list[float], loss: list[float], objective_type: str = "maximize",
           record: bool = True) -> None:
    store = ObservationStore(db)
    try:
        rows = [MetricLog(_stamp(i), "accuracy", str(v)) for i, v in enumerate(accuracy)]
        rows += [MetricLog(_stamp(i), "loss", str(v)) for i, v in enumerate(loss)]
        store.report(name, rows)
        if record:
            store.record_trial(TrialInfo(name, "2026-01-01T00:00:00Z", ("accuracy", "loss"), objective_type,
                                         {"accuracy": "max", "loss": "max"} if objective_type == "maximize"
                                         else {"accuracy": "min", "loss": "min"}))
    finally:
        store.close()


def test_trials_lists_best_first_with_the_objectives_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "obs.db"
    _store(db, "low", [0.1, 0.5, 0.4], [3, 2, 1])
    _store(db, "high", [0.2, 0.9, 0.8], [3, 2, 1])
    _store(db, "other-tool", [0.99], [0.1], record=False)  # rows reported by something else: no spec
    assert trials(["--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TRIAL", "CREATED", "ROWS", "OBJECTIVE", "STRATEGY", "VALUE"]
    assert [line.split()[0] for line in out[1:]] == ["high", "low", "other-tool"]
    assert out[1].split()[3:] == ["6", "accuracy", "max", "0.9"]
    assert trials(["--db", str(db), "--output", "json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["trial_name"], t["value"], t["rows"]) for t in listed] == [("high", "0.9", 6), ("low", "0.5", 6),
                                                                         ("other-tool", "-", 2)]


def test_minimize_trials_put_the_smallest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "obs.db"
    for name, best in [("b", 0.3), ("a", 0.2), ("c", 0.25)]:
        _store(db, name, [best, best + 1], [1.0], objective_type="minimize")
    assert trials(["--db", str(db)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["a", "c", "b"]


def test_a_store_of_the_old_schema_is_migrated_and_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # what the db-manager wrote before trials were recorded
        conn.executescript(
            "CREATE TABLE observation_logs (trial_name TEXT NOT NULL, id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "time INTEGER NOT NULL, metric_name TEXT NOT NULL, value TEXT NOT NULL);"
            "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES ('old', 1000000, 'loss', '2');"
        )
    conn.close()
    assert trials(["--db", str(db)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["old", "1970-01-01", "00:00:01", "1", "-", "-", "-"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone() == (0,)
    conn.close()


def test_show_puts_trials_side_by_side_with_a_trend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "obs.db"
    _store(db, "t1", [0.1, 0.2, 0.3], [3, 2, 1])
    _store(db, "t2", [0.5, 0.4], [1, 1])
    assert show(["t1", "t2", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TRIAL", "METRIC", "STRATEGY", "VALUE", "MIN", "MAX", "LATEST", "COUNT", "TREND"]
    rows = {(line.split()[0], line.split()[1]): line.split()[2:] for line in out[1:]}
    assert rows["t1", "accuracy"] == ["max", "0.3", "0.1", "0.3", "0.3", "3", sparkline([0.1, 0.2, 0.3])]
    assert rows["t1", "loss"][-1] == BARS[-1] + BARS[len(BARS) // 2] + BARS[0]
    assert rows["t2", "loss"][-1] == BARS[len(BARS) // 2] * 2  # flat
    assert show(["t1", "--db", str(db)]) == 0
    assert capsys.readouterr().out.split()[0] == "METRIC"  # one trial: no TRIAL column


def test_show_json_from_a_db_manager_is_parses_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path / "remote.db", "far", [0.1, 0.7], [2, 1])
    server = serve("127.0.0.1:0", tmp_path / "remote.db")
    try:
        code = show(["far", "--db-manager", server.address, "-m", "loss", "--objective-type", "minimize",
                     "--output", "json"])
    finally:
        server.stop(grace=1)
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["trial_name", "metric_logs", "observation"]
    assert document["observation"]["metrics"] == [
        {"name": "loss", "min": "1", "max": "2", "latest": "1", "strategy": "min", "value": "1"}]
    assert len(document["metric_logs"]) == 4


def test_show_names_an_unknown_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "obs.db"
    _store(db, "known", [0.1], [1])
    assert show(["typo", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "no trial 'typo'" in err and "known" in err
    assert show(["x", "--db", str(tmp_path / "absent.db")]) == 2
    assert "no such file" in capsys.readouterr().err and not (tmp_path / "absent.db").exists()


def test_plot_png_decodes_at_the_expected_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    db = tmp_path / "obs.db"
    _store(db, "t1", [0.1, 0.2, 0.3], [3, 2, 1])
    _store(db, "t2", [0.5, 0.4], [1, 1])
    assert show(["t1", "t2", "--db", str(db), "--plot", str(tmp_path / "p.png")]) == 0
    assert "4 lines drawn" in capsys.readouterr().err
    with image.open(tmp_path / "p.png") as png:
        png.load()  # decodes every pixel
        assert png.format == "PNG" and png.size == (800, 600)  # 8 x 3 inches per metric at 100 dpi
        assert len(png.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 5  # something was drawn


@settings(max_examples=5, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), min_size=1, max_size=4),
       st.integers(1, 3))
def test_plot_svg_has_one_path_per_series(tmp_path_factory: pytest.TempPathFactory, values: list[list[float]],
                                          metrics: int) -> None:
    pytest.importorskip("matplotlib")
    from katib_metrics.collector.plot import plot_trials

    trials_rows = [(f"trial-{t}", [MetricLog(_stamp(i % 60), f"m{m}", repr(v)) for m in range(metrics)
                                   for i, v in enumerate(series)]) for t, series in enumerate(values)]
    path = tmp_path_factory.mktemp("svg") / "plot.svg"
    assert plot_trials(trials_rows, path) == len(values) * metrics
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    groups = [g for g in root.iter(f"{ns}g") if re.match(r"series:", g.get("id", ""))]
    assert len(groups) == len(values) * metrics
    assert all(len(list(g.iter(f"{ns}path"))) >= 1 for g in groups)


def test_plot_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "obs.db"
    _store(db, "t1", [0.1], [1])
    assert show(["t1", "--db", str(db), "--plot", str(tmp_path / "p.gif")]) == 2
    assert "must end in .png or .svg" in capsys.readouterr().err


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=200), st.integers(1, 40), st.booleans())
def test_sparkline_bounds_and_order(values: list[float], width: int, ascii_only: bool) -> None:
    bars = ASCII_BARS if ascii_only else BARS
    line = sparkline(values, width, ascii_only=ascii_only)
    assert 1 <= len(line) <= min(width, len(values)) and set(line) <= set(bars)
    if len(values) <= width and max(values) > min(values):
        assert line[values.index(min(values))] == bars[0] and line[values.index(max(values))] == bars[-1]
    ranks = [bars.index(c) for c in sparkline(sorted(values), width, ascii_only=ascii_only)]
    assert ranks == sorted(ranks)  # rising values never draw a falling line


def test_show_without_a_store_creates_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert show(["t"]) == 2
    assert "no local store" in capsys.readouterr().err and not (tmp_path / "data").exists()
    assert trials([]) == 0
    assert "no trials in" in capsys.readouterr().out and not (tmp_path / "data").exists()
