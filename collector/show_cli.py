"""`katib-metrics show TRIAL...`: a trial's metrics (several side by side), as a table, JSON or a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from katib_metrics.collector.dbmanager.store import StoreError
from katib_metrics.collector.results import ReadError, TrialData, UnknownTrial, existing_db, load_local, load_remote
from katib_metrics.parsers.durations import parse_duration
from katib_metrics.parsers.install import install_command
from katib_metrics.parsers.model import CollectorSpec, ObjectiveType
from katib_metrics.parsers.table import series_means, sparkline, summary_table, write_json_document

__all__ = ["main"]

EPILOG = """\
examples:
  katib-metrics show lr-0.3                       # one trial of the local store
  katib-metrics show lr-0.3 lr-0.1 --plot runs.png  # two trials side by side, and a plot of each metric
  katib-metrics show trial-1 --db-manager localhost:6789 -m accuracy --objective-type maximize
  katib-metrics show lr-0.3 --resend              # send rows a db-manager did not take to it again

The local store knows each trial's objective, direction and strategies from `run`; a db-manager
knows only rows, so give -m and --objective-type for its STRATEGY and VALUE columns. TREND draws each
metric's numbers in time order. --plot needs matplotlib (the `plot` extra)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Show the metrics of one or several collected trials.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("trials", nargs="+", metavar="TRIAL", help="trial names (`katib-metrics trials` lists them)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="FILE", help="the local store's SQLite file (default: user data dir)")
    where.add_argument("--db-manager", metavar="HOST:PORT", help="read from this db-manager (GetObservationLog)")
    add("-m", "--metric", action="append", default=[], metavar="NAME",
        help="metrics to show, the first is the objective (default: what `run` recorded, else all)")
    add("--objective-type", choices=["maximize", "minimize"], type=str.lower, help="direction of the objective")
    add("--output", choices=["table", "json"], default="table", type=str.lower,
        help="table for people (default) or, per trial, one JSON object as `parse --output json`, one per line")
    add("--plot", type=Path, metavar="FILE", help="draw each metric over time into FILE.png or FILE.svg")
    add("--resend", nargs="?", const="", metavar="HOST:PORT",
        help="send the trial's local rows to this db-manager (default: the one that did not take them)")
    add("--timeout", default="30s", metavar="DURATION", help="how long to try a db-manager (30s)")
    return parser


def _override(spec: CollectorSpec, args: argparse.Namespace) -> CollectorSpec:
    names = tuple(dict.fromkeys(n.strip() for item in args.metric for n in item.split(";") if n.strip()))
    if not names and not args.objective_type:
        return spec
    return CollectorSpec(names or spec.metric_names,
                         objective_type=ObjectiveType.parse(args.objective_type or spec.objective_type),
                         strategy_overrides={} if args.objective_type else spec.strategy_overrides)


def _load(args: argparse.Namespace, timeout: float) -> list[TrialData]:
    if args.db_manager:
        return load_remote(args.db_manager, args.trials, _override(CollectorSpec(), args), timeout)
    trials = load_local(existing_db(args.db), args.trials)
    return [TrialData(t.name, t.rows, _override(t.spec, args), t.info) for t in trials]


def _table(trials: list[TrialData]) -> str:
    ascii_only = "utf" not in (getattr(sys.stdout, "encoding", "") or "").lower()
    summaries, names, trends = [], [], []
    for trial in trials:
        series = series_means(trial.rows)
        for summary in trial.summaries():
            summaries.append(summary)
            names.append(trial.name)
            trends.append(sparkline(series.get(summary.name, []), ascii_only=ascii_only))
    return summary_table(summaries, trials=names if len(trials) > 1 else None, trends=trends)


def _plot(trials: list[TrialData], path: Path, prog: str) -> int:
    try:
        from katib_metrics.collector.plot import PlotError, plot_trials

        lines = plot_trials([(trial.name, list(trial.rows)) for trial in trials], path)  # every point is drawn
    except ImportError as err:
        print(f"{prog}: error: --plot needs {err.name or 'matplotlib'}: {install_command('plot')}", file=sys.stderr)
        return 2
    except PlotError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{prog}: error: cannot write {path}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{prog}: {lines} lines drawn in {path}", file=sys.stderr)
    return 0


def main(argv: list[str], prog: str = "katib-metrics show") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as err:
        parser.error(f"--timeout: {err}")
    if args.resend is not None:
        from katib_metrics.collector.resend import resend_main

        return resend_main(args, prog)
    try:
        trials = _load(args, timeout)
    except (StoreError, UnknownTrial) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except ReadError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    if args.output == "json":
        for trial in trials:
            write_json_document(sys.stdout, trial.all_rows(), trial.summaries(), trial_name=trial.name)
            print()
    else:
        print(_table(trials))
    return _plot(trials, args.plot, prog) if args.plot else 0
