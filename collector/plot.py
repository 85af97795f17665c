"""`show --plot`: each metric over time, one line per trial, drawn with matplotlib (the `plot` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from katib_metrics.parsers.model import ZERO_TIME, MetricLog
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.timestamps import parse_rfc3339

__all__ = ["FIGURE_WIDTH", "PANEL_HEIGHT", "PlotError", "plot_trials", "series_id"]

FIGURE_WIDTH = 8.0  # inches; at DPI a PNG is 800 pixels wide and 300 high per metric
PANEL_HEIGHT = 3.0
DPI = 100
FORMATS = (".png", ".svg")


class PlotError(ValueError):
    """The plot cannot be made: unknown file type, nothing numeric to draw."""


def series_id(metric: str, trial: str) -> str:
    """The SVG id of one drawn line (tests and tools count them)."""
    return f"series:{metric}:{trial}"


def _points(rows: Sequence[MetricLog], metric: str) -> tuple[list[float], list[float], bool]:
    """(x, y, timed): seconds since the trial's first time stamp, or the row's position when untimed."""
    picked = [(row.time_stamp, value) for row in rows
              if row.name == metric and (value := parse_go_float(row.value)) is not None and abs(value) < float("inf")]
    instants = [parse_rfc3339(stamp) if stamp != ZERO_TIME else None for stamp, _ in picked]
    if not picked or any(instant is None for instant in instants):
        return [float(i) for i in range(len(picked))], [value for _, value in picked], False
    seconds = [instant.seconds + instant.nanos / 1e9 for instant in instants if instant is not None]
    return [s - seconds[0] for s in seconds], [value for _, value in picked], True


def _metrics(trials: Sequence[tuple[str, Sequence[MetricLog]]]) -> list[str]:
    names: dict[str, None] = {}
    for _, rows in trials:
        for row in rows:
            if parse_go_float(row.value) is not None:
                names.setdefault(row.name)
    return list(names)


def plot_trials(trials: Sequence[tuple[str, Sequence[MetricLog]]], path: Path) -> int:
    """Draw one panel per metric and one line per trial into `path` (.png or .svg); returns the lines drawn."""
    if path.suffix.lower() not in FORMATS:
        raise PlotError(f"--plot {path}: the file name must end in .png or .svg")
    metrics = _metrics(trials)
    if not metrics:
        raise PlotError(f"--plot {path}: no numeric values to draw")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot

    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: the SVG's paths are the drawing
    figure, axes = pyplot.subplots(len(metrics), 1, squeeze=False,
                                   figsize=(FIGURE_WIDTH, PANEL_HEIGHT * len(metrics)), dpi=DPI)
    lines = 0
    try:
        for panel, metric in zip(axes[:, 0], metrics, strict=True):
            timed = True
            for trial, rows in trials:
                x, y, has_time = _points(rows, metric)
                if y:
                    (line,) = panel.plot(x, y, marker="." if len(y) < 50 else None, label=trial)
                    line.set_gid(series_id(metric, trial))
                    lines += 1
                    timed = timed and has_time
            panel.set_title(metric)
            panel.set_xlabel("seconds since the trial's first value" if timed else "value number")
            panel.legend(loc="best", fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=DPI)
    finally:
        pyplot.close(figure)
    return lines
