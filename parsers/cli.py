"""`katib-metrics parse`: the one-shot mode, for debugging a log's metrics and as the golden-test driver.

The only module of `parsers` that reads argv, files and stdin, and writes to the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, NoReturn, TextIO, cast

from katib_metrics.parsers.diagnosis import DEFAULT_MAX_BYTES
from katib_metrics.parsers.diagnosis_report import explain
from katib_metrics.parsers.durations import parse_duration
from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.input_checks import HeadKeeper, empty_metric_warning
from katib_metrics.parsers.jsonl import JsonLinesParser
from katib_metrics.parsers.model import (
    ZERO_TIME,
    CollectorSpec,
    FileFormat,
    MetricLog,
    MetricSummary,
    ObjectiveType,
    Strategy,
)
from katib_metrics.parsers.observation import unavailable_rows
from katib_metrics.parsers.stats import ParseStats, Skipped
from katib_metrics.parsers.strategies import Reducer
from katib_metrics.parsers.stream import scan
from katib_metrics.parsers.table import summary_table
from katib_metrics.parsers.text import DEFAULT_REGEX_TIMEOUT, TextParser

__all__ = ["main"]

FORMATS = {
    "text": FileFormat.TEXT,
    "json": FileFormat.JSON,
    "tfevent": FileFormat.TFEVENT,
    "prometheus": FileFormat.PROMETHEUS,
}
MAX_WARNINGS = 20

EXAMPLES = """\
examples:
  katib-metrics parse train.log -m accuracy -m loss
  katib-metrics parse --format json -m loss metrics.jsonl --output json
  katib-metrics parse -m 'val_loss;accuracy' -f '([\\w-]+):\\s*([+-]?\\d*\\.?\\d+)' keras.log
  katib-metrics parse logs/ -m train/accuracy          # a TensorFlow event directory
  python train.py | katib-metrics parse -m loss -

exit status: 0 success (also when the objective is unavailable), 1 unreadable input, 2 usage error.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _build(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Parse a metrics log, JSON lines file, Prometheus exposition or TensorFlow event "
        "directory as Katib's collector would, and print min/max/latest per metric and the value Katib would "
        "take (--output json: the observation log too).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="file, event directory, or - for standard input")
    parser.add_argument(
        "--format",
        choices=sorted(FORMATS),
        type=str.lower,
        help="input kind (default: text, or tfevent when PATH is a directory)",
    )
    parser.add_argument(
        "-m",
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="metric name; repeat or join with ';'. The first is the objective. "
        "Without -m every metric found is reported",
    )
    parser.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="REGEX",
        help="metricsFormat regex with two groups (name, value); repeatable, each one whole "
        "regex (default: Katib's name=value filter)",
    )
    parser.add_argument(
        "--objective-type",
        choices=["maximize", "minimize"],
        type=str.lower,
        help="sets each metric's default strategy: max or min (default: latest)",
    )
    parser.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME=min|max|latest",
        help="override one metric's strategy",
    )
    parser.add_argument(
        "--output",
        choices=["table", "json"],
        default="table",
        type=str.lower,
        help="table for people (default) or one JSON object",
    )
    parser.add_argument(
        "--regex-timeout",
        default=str(DEFAULT_REGEX_TIMEOUT),
        metavar="DURATION",
        help="time budget of one line's matching (Go syntax like 500ms, or seconds; default 1s)",
    )
    parser.add_argument(
        "--experiment",
        metavar="FILE",
        help="take -m, -f, --format, --objective-type and strategies from a Katib Experiment or Trial "
        "(YAML or JSON; FILE#NAME picks one of several); flags given explicitly win",
    )
    return parser


def _strategies(parser: argparse.ArgumentParser, items: Iterable[str]) -> dict[str, Strategy]:
    chosen: dict[str, Strategy] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            chosen[name.strip()] = Strategy(value.strip().lower())
        except ValueError:
            parser.error(f"--strategy {item!r}: expected NAME=min, NAME=max or NAME=latest")
        if not name.strip():
            parser.error(f"--strategy {item!r}: the metric name is missing")
    return chosen


def _spec(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CollectorSpec:
    names = tuple(dict.fromkeys(n.strip() for item in args.metric for n in item.split(";") if n.strip()))
    if args.experiment:
        from katib_metrics.parsers.experiment_flags import spec_from_experiment

        try:
            return spec_from_experiment(
                args.experiment, names=names, filters=tuple(args.filter),
                fmt=FORMATS[args.format] if args.format else None, objective_type=args.objective_type,
                strategies=_strategies(parser, args.strategy))[1]
        except SpecError as err:
            parser.error(str(err))
    fmt = (
        FORMATS[args.format]
        if args.format
        else (FileFormat.TFEVENT if args.path != "-" and os.path.isdir(args.path) else FileFormat.TEXT)
    )
    return CollectorSpec(
        metric_names=names,
        filters=tuple(args.filter),
        format=fmt,
        objective_type=ObjectiveType.parse(args.objective_type),
        strategy_overrides=_strategies(parser, args.strategy),
    )


def _check_path(parser: argparse.ArgumentParser, path: str, fmt: FileFormat) -> None:
    if path == "-":
        if fmt is FileFormat.TFEVENT:
            parser.error("--format tfevent reads a directory, not standard input")
        return
    if not os.path.exists(path):
        parser.error(f"{path}: no such file or directory")
    if os.path.isdir(path) and fmt is not FileFormat.TFEVENT:
        parser.error(f"{path} is a directory: use --format tfevent for TensorFlow event directories")
    if not os.path.isdir(path) and fmt is FileFormat.TFEVENT:
        parser.error(f"{path} is a file: --format tfevent reads the directory of event files")


class _Warnings:
    """Prints the first skipped items with their line numbers, then only counts."""

    def __init__(self, prog: str, path: str) -> None:
        self.prog, self.path, self.shown = prog, path, 0

    def notice(self, lineno: int, message: str) -> None:
        """A value recorded but suspect (a number the filter cut short): always shown, once per metric."""
        where = "stdin" if self.path == "-" else self.path
        print(f"{self.prog}: warning: {where}:{lineno}: {message}", file=sys.stderr)

    def __call__(self, skip: Skipped) -> None:
        if self.shown < MAX_WARNINGS:
            where = "stdin" if self.path == "-" else self.path
            print(
                f"{self.prog}: warning: {where}:{skip.where}: skipped ({skip.reason}): {skip.detail}",
                file=sys.stderr,
            )
        self.shown += 1


def _batches(
    spec: CollectorSpec, path: str, stats: ParseStats, warn: _Warnings, text_parser: TextParser | None,
    keep: HeadKeeper | None = None,
) -> Iterator[Sequence[MetricLog]]:
    if spec.format is FileFormat.TFEVENT:
        from katib_metrics.parsers.tfevent import EventDirReader  # protobuf is only needed for event files

        reader = EventDirReader(path, spec, stats, warn)
        yield from reader.iter_batches()  # a file chunk at a time: memory stays flat
        reader.report_incomplete_tails()
        return
    with cast(BinaryIO, keep) if keep is not None else _open(path) as stream:
        if text_parser is not None:
            yield from scan(stream, text_parser)
        elif spec.format is FileFormat.JSON:
            yield from scan(stream, JsonLinesParser(spec, stats=stats, on_skip=warn))
        else:
            from katib_metrics.parsers.prometheus import exposition_batches, line_count

            text = stream.read().decode("utf-8", "replace")
            stats.lines += line_count(text)
            yield from exposition_batches(text, spec, ZERO_TIME, stats, warn)


def _open(path: str) -> BinaryIO:
    if path == "-":
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    return open(path, "rb")


class _JsonOut:
    """Streams `metric_logs` entries as they come, so memory never holds the whole log."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.first = out, True
        out.write('{"metric_logs": [')

    def add_all(self, logs: Sequence[MetricLog]) -> None:
        if logs:
            self.out.write(("" if self.first else ", ") + ", ".join(json.dumps(log.to_dict()) for log in logs))
            self.first = False

    def finish(self, summaries: list[MetricSummary], diagnosis: list[dict[str, Any]] | None = None) -> None:
        observation = {"metrics": [summary.to_dict() for summary in summaries]}
        self.out.write('], "observation": ' + json.dumps(observation)
                       + ', "diagnosis": ' + json.dumps(diagnosis or []) + "}\n")


def _collect(
    spec: CollectorSpec, batches: Iterable[Sequence[MetricLog]], reducer: Reducer, out: _JsonOut | None
) -> None:
    for logs in batches:
        reducer.add_all(logs)  # event files' rows are numbers until written: the table never writes them
        if out is not None:
            out.add_all(logs)
    rows = unavailable_rows(spec, reducer.seen())
    reducer.add_all(rows)
    if out is not None:
        out.add_all(rows)


def _print_table(summaries: list[MetricSummary], out: TextIO) -> None:
    print(summary_table(summaries), file=out)


def _summary_line(prog: str, stats: ParseStats, warn: _Warnings) -> str:
    values = sum(stats.values.values())
    text = f"{prog}: {stats.lines} lines/records read, {values} values recorded"
    if stats.skipped_total:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(stats.skipped.items()))
        text += f", {stats.skipped_total} skipped ({reasons})"
        if warn.shown > MAX_WARNINGS:
            text += f"; only the first {MAX_WARNINGS} were shown"
    return text


def main(argv: list[str], prog: str = "katib-metrics parse") -> int:
    parser = _build(prog)
    args = parser.parse_args(argv)
    spec = _spec(parser, args)
    _check_path(parser, args.path, spec.format)
    if (empty := empty_metric_warning(args.metric)) is not None:
        print(f"{prog}: warning: {empty}", file=sys.stderr)
    try:
        regex_timeout = parse_duration(args.regex_timeout)
    except ValueError as err:
        parser.error(f"--regex-timeout: {err}")
    if spec.filters and spec.format is not FileFormat.TEXT:
        parser.error(
            f"-f applies to --format text only, not {spec.format.lower()}: "
            "JSON keys, event tags and sample names already name the metrics"
        )
    stats, warn, reducer = ParseStats(), _Warnings(prog, args.path), Reducer(spec)
    try:  # compiling the filters up front makes a bad -f a usage error before any output
        text_parser = (
            TextParser(spec, regex_timeout=regex_timeout, stats=stats, on_skip=warn, on_notice=warn.notice)
            if spec.format is FileFormat.TEXT
            else None
        )
        if spec.format is FileFormat.PROMETHEUS:  # a bad `name{...}` selector, before any output
            from katib_metrics.parsers.prometheus import compile_selectors

            compile_selectors(spec.metric_names)
    except SpecError as err:
        parser.error(str(err))
    out = _JsonOut(sys.stdout) if args.output == "json" else None
    try:
        keep = HeadKeeper(_open("-"), DEFAULT_MAX_BYTES) if args.path == "-" else None  # stdin, for the diagnosis
        _collect(spec, _batches(spec, args.path, stats, warn, text_parser, keep), reducer, out)
    except ImportError as err:
        print(f"{prog}: error: reading TensorFlow event files needs {err.name}: "
              "pip install 'katib-metrics-collector[tfevent]'", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # stdout's reader left, not the input: the app shell ends quietly
    except OSError as err:
        print(f"{prog}: error: cannot read {args.path}: {err.strerror or err}", file=sys.stderr)
        return 1
    summaries = reducer.summaries()
    why = explain(spec, args.path, summaries, head=None if keep is None else bytes(keep.head),
                  regex_timeout=regex_timeout)
    if out is not None:
        out.finish(summaries, why.to_json())
    else:
        _print_table(summaries, sys.stdout)
    for line in why.lines():
        print(f"{prog}: {line}", file=sys.stderr)
    print(_summary_line(prog, stats, warn), file=sys.stderr)
    return 0
