"""Command lines of the collector: `katib-metrics collect` (the sidecar) and `katib-metrics run`.

The only module of `collector` that reads argv and the environment, installs signal handlers and
configures logging; everything else receives settings. Usage errors exit 2 with one line naming the
problem (Go's flag package does the same for Katib's images), never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from katib_metrics.collector.flags import HelpRequested, UsageError, parse_duration, parse_sidecar_flags, usage
from katib_metrics.collector.lifecycle import Waker
from katib_metrics.collector.settings import check_address, resolve_settings, split_names

if TYPE_CHECKING:
    from katib_metrics.collector.run import RunOptions

__all__ = ["collect_main", "run_main"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(default: str = "INFO") -> None:
    level = os.environ.get("KATIB_METRICS_LOG_LEVEL", default).upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format=LOG_FORMAT, stream=sys.stderr)


GC_YOUNG_THRESHOLD = 10_000


def _tune_gc() -> None:
    """For a long run that allocates tens of thousands of short-lived rows a second, and few cycles.

    With the default young-generation threshold (700 allocations) the collector ran about 30 times a
    second at 10,000 lines/s, and every tenth older collection walked the objects of all the modules
    imported (gRPC, protobuf, prometheus_client): about 1 % of a core. Freezing what start-up created
    and collecting the young generation every 10,000 allocations brought that to about 0.1 %.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _usage_error(prog: str, problem: object) -> int:
    print(f"{prog}: error: {problem}", file=sys.stderr)
    print(f"Run `{prog} --help` for the flags.", file=sys.stderr)
    return 2


def collect_main(argv: list[str], prog: str) -> int:
    """The sidecar: Katib's collector flags in, one report out; see `collector.sidecar` for exit codes."""
    try:
        settings = resolve_settings(parse_sidecar_flags(argv), os.environ)
    except HelpRequested:
        print(usage(prog))
        return 0
    except UsageError as err:
        return _usage_error(prog, err)
    _configure_logging()
    from katib_metrics.collector.sidecar import run_sidecar  # gRPC and prometheus_client load only for a real run

    waker = Waker()
    terminated = threading.Event()

    def terminate(signum: int, frame: FrameType | None) -> None:
        waker.wake()
        terminated.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, terminate)
    _tune_gc()
    try:
        return run_sidecar(settings, waker, terminated=terminated)
    finally:
        waker.close()


RUN_EPILOG = """\
examples:
  katib-metrics run -m accuracy -m loss -- python examples/train.py
  katib-metrics run -m loss --objective-type minimize --path train.log -- ./train.sh
  katib-metrics run -m accuracy --tfevent-dir logs/ --db-manager localhost:6789 -- python mnist.py

Without --path or --tfevent-dir the metrics are read from the command's output (stdout and stderr
through one pipe, as Katib's StdOut collector does), which is still shown as it comes, in the order
written. Without --db-manager the observations go to the local store (`katib-metrics trials` lists
its trials, `katib-metrics show TRIAL` shows or plots them, `katib-metrics db-manager --db FILE` serves
it over gRPC); if --db-manager never answers, they are kept there for `show TRIAL --resend`.
The exit status is the command's, or 1 if it succeeded but its metrics could not be stored."""


def _run_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, usage=f"{prog} [options] -- COMMAND [ARG]...",
                                     description="Run a training command and collect its metrics.",
                                     epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--trial", help="trial name to report under (default: generated, run-DATE-TIME-XXXX)")
    add("-m", "--metric", action="append", default=[], metavar="NAME",
        help="metric to collect; repeat or join with ';'; the first is the objective (default: all found)")
    add("-f", "--filter", action="append", default=[], metavar="REGEX",
        help="metricsFormat regex with (name) and (value) groups; repeatable (default: Katib's name=value)")
    add("--format", choices=["text", "json", "tfevent"], type=str.lower,
        help="what the metrics look like (default: text, tfevent with --tfevent-dir)")
    add("--objective-type", choices=["maximize", "minimize"], type=str.lower, help="direction of the objective")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--path", type=Path, metavar="FILE", help="read metrics from this file instead")
    source.add_argument("--tfevent-dir", type=Path, metavar="DIR", help="read TensorFlow event files here")
    add("--db-manager", metavar="HOST:PORT", help="report to this Katib db-manager instead of the local store")
    add("--db", type=Path, metavar="FILE",
        help="the local store's SQLite file; its directory must exist (default: user data dir)")
    add("--append", action="store_true",
        help="add to a trial of the local store that already has rows (without it, such a --trial is refused)")
    add("--output", choices=["table", "json"], default="table", type=str.lower,
        help="the summary table (default) or `parse --output json`'s document on stdout (the command's "
             "output then goes to stderr)")
    add("--stop-rule", action="append", default=[], metavar="RULE",
        help="stop the command early when the rule holds: name;value;comparison;startStep, comparison one of "
             "less, greater, equal, e.g. accuracy;0.6;less;4 (repeatable; all must hold; the objective is "
             "compared by its best value)")
    add("--stop-grace", default="10s", metavar="DURATION",
        help="after an early stop, SIGKILL what still runs this long after SIGTERM (10s)")
    add("--report-timeout", default="300s", metavar="DURATION", help="retry reporting this long (300s)")
    add("--regex-timeout", default="1s", metavar="DURATION", help="time bound of one line's match (1s)")
    from katib_metrics.collector.run_experiment import add_experiment_options

    add_experiment_options(parser)
    add("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _db_path(path: Path | None) -> Path | None:
    from katib_metrics.collector.dbmanager.store import StoreError, resolve_db_path

    try:
        return None if path is None else resolve_db_path(path)
    except StoreError as err:
        raise UsageError(str(err)) from None


def _run_options(args: argparse.Namespace, command: list[str]) -> RunOptions:
    from katib_metrics.collector.earlystop import parse_stop_rules
    from katib_metrics.collector.run import RunOptions, default_trial_name
    from katib_metrics.parsers.errors import FilterError
    from katib_metrics.parsers.filters import compile_filters
    from katib_metrics.parsers.model import CollectorSpec, FileFormat, ObjectiveType

    fmt = FileFormat.TFEVENT if args.tfevent_dir else FileFormat((args.format or "text").upper())
    if fmt is FileFormat.TFEVENT and not args.tfevent_dir:
        raise UsageError("--format tfevent needs --tfevent-dir DIR")
    if fmt is FileFormat.JSON and args.filter:
        raise UsageError("-f cannot be used with --format json: JSON keys name the metrics")
    try:
        compile_filters(args.filter)
    except FilterError as err:
        raise UsageError(str(err)) from None
    names = tuple(dict.fromkeys(n for text in args.metric for n in split_names(text)))
    spec = CollectorSpec(names, tuple(args.filter), fmt, ObjectiveType.parse(args.objective_type))
    options = RunOptions(tuple(command), spec, args.trial or default_trial_name(),
                      path=args.tfevent_dir or args.path,
                      db_manager=check_address(args.db_manager, "--db-manager") if args.db_manager else None,
                      db_path=_db_path(args.db), append=args.append, output=args.output,
                      report_timeout=parse_duration(args.report_timeout, "-report-timeout"),
                      regex_timeout=parse_duration(args.regex_timeout, "-regex-timeout"),
                      stop_rules=parse_stop_rules(args.stop_rule),
                      stop_grace=parse_duration(args.stop_grace, "-stop-grace"))
    if args.experiment:
        from katib_metrics.collector.run_experiment import with_experiment

        return with_experiment(options, args, command)
    if args.param:
        raise UsageError("--param needs --experiment FILE: the trial parameters are the Experiment's")
    return options


def run_main(argv: list[str], prog: str) -> int:
    """`katib-metrics run [options] -- COMMAND [ARG]...`."""
    parser = _run_parser(prog)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])  # exits 2 with a usage line on unknown options
    command = argv[split + 1:] if split < len(argv) else list(args.command)
    if not command and not args.experiment:
        return _usage_error(prog, "no command to run: put it after `--`, e.g. -- python train.py")
    try:
        options = _run_options(args, command)
    except UsageError as err:
        return _usage_error(prog, err)
    from katib_metrics.parsers.input_checks import empty_metric_warning

    if (empty := empty_metric_warning(args.metric)) is not None:
        print(f"{prog}: warning: {empty}", file=sys.stderr)
    _configure_logging("WARNING")  # the command's own output is what people watch
    from katib_metrics.collector.run import run_command

    _tune_gc()
    return run_command(options)
