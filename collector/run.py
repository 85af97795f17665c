"""`katib-metrics run`: run a training command here, show its output live, collect and report its metrics.

    COMMAND's stdout+stderr (tee) | --path FILE | --tfevent-dir DIR → parser → store
      → report to --db-manager, else to the embedded local db-manager (SQLite, --db) → summary table

The command's exit status is ours; 1 when the command succeeded but its metrics could not be stored.
Ctrl-C reaches the command through the terminal; we then still report what was collected.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, BinaryIO, TextIO, cast

from katib_metrics.collector.dbmanager import ObservationStore, StoreError, TrialInfo, default_db_path, serve
from katib_metrics.collector.delivery import Delivery, deliver
from katib_metrics.collector.diagnostics import OutputHead, explain_safely, print_explanation
from katib_metrics.collector.earlystop import DEFAULT_STOP_GRACE, StopRule
from katib_metrics.collector.pipeline import ParsedLines, Pipeline, open_source
from katib_metrics.collector.push_run import PushedRows
from katib_metrics.collector.report import ReportError
from katib_metrics.collector.resend import keep_locally
from katib_metrics.collector.run_output import LineEnd, QuietText, RetryNotice, write_results
from katib_metrics.collector.sources.base import LogSource
from katib_metrics.collector.sources.pipe import ProcessOutput
from katib_metrics.collector.stopper import EarlyStop
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import CollectorSpec
from katib_metrics.parsers.stats import ParseStats
from katib_metrics.parsers.table import plural
from katib_metrics.parsers.timestamps import Instant, format_rfc3339

__all__ = ["RunOptions", "default_trial_name", "run_command"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    command: tuple[str, ...]
    spec: CollectorSpec
    trial: str
    path: Path | None = None  # a metrics file (TEXT/JSON) or event directory (TFEVENT); None: the output
    db_manager: str | None = None
    db_path: Path | None = None  # the embedded store; None: the user's default
    report_timeout: float = 300.0
    regex_timeout: float = 1.0
    stop_rules: tuple[StopRule, ...] = ()  # early stopping: the command's process tree is stopped
    stop_grace: float = DEFAULT_STOP_GRACE
    append: bool = False  # add to a trial of the local store that already has rows
    output: str = "table"  # or "json": `parse --output json`'s document on stdout, the command's output on stderr
    env: tuple[tuple[str, str], ...] = ()  # added to the command's environment (a trial template's `env`)
    prometheus_url: str | None = None  # scrape the command's endpoint (PrometheusMetric) instead of its output


def default_trial_name(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"run-{stamp}-{secrets.token_hex(2)}"


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


@contextmanager
def _signals(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Ctrl-C goes to the command (same process group) and we wait for it; SIGTERM is passed on."""

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _source(options: RunOptions, proc: subprocess.Popen[bytes], stats: ParseStats, tee: LineEnd) -> LogSource:
    if options.path is not None or options.prometheus_url:
        return open_source(options.spec, path=options.path, stats=stats, regex_timeout=options.regex_timeout,
                           prometheus_url=options.prometheus_url)
    assert proc.stdout is not None  # stderr shares the pipe: lines stay in the order they were written
    parser = make_line_parser(options.spec, regex_timeout=options.regex_timeout, stats=stats)
    return ParsedLines(ProcessOutput([(proc.stdout, cast(IO[bytes], tee))]), parser)  # it only writes, flushes


def _trial_info(options: RunOptions, started: float, resend_to: str = "") -> TrialInfo:
    spec = options.spec
    return TrialInfo(options.trial, format_rfc3339(Instant(int(started), int(started % 1 * 1e9))),
                     spec.metric_names, str(spec.objective_type),
                     {name: str(spec.strategy_for(name)) for name in spec.metric_names}, resend_to)


def _check_trial(options: RunOptions) -> str | None:
    """Refuse a trial name the local store already holds rows of, unless --append (Katib would add to them)."""
    if options.db_manager or options.append:
        return None
    store = ObservationStore(options.db_path or default_db_path())
    try:
        rows = store.row_count(options.trial)
    finally:
        store.close()
    if not rows:
        return None
    return (f"trial {options.trial!r} already has {plural(rows, 'row')} in {store.path}: choose another "
            "--trial, or add --append to add to them")


def _report(store: MetricStore, options: RunOptions, started: float) -> tuple[Delivery, str]:
    if options.db_manager:
        where = f"db-manager {options.db_manager}"
        notice = RetryNotice(where, options.report_timeout)
        return deliver(store, options.trial, options.db_manager, budget=options.report_timeout,
                       observer=notice), where
    db_path = options.db_path or default_db_path()
    server = serve("127.0.0.1:0", db_path)
    try:
        delivery = deliver(store, options.trial, server.address, budget=options.report_timeout)
        server.store.record_trial(_trial_info(options, started))
        return delivery, f"{db_path}"
    finally:
        server.stop(grace=5)


def _keep(store: MetricStore, options: RunOptions, started: float) -> None:
    """The db-manager did not take the rows: keep them in the local store and say how to send them again."""
    db_path = options.db_path or default_db_path()
    try:
        kept = keep_locally(db_path, _trial_info(options, started, options.db_manager or ""), store.all_rows())
    except (StoreError, OSError) as error:
        print(f"katib-metrics run: error: the rows could not be kept locally either: {error}", file=sys.stderr)
        return
    db = "" if options.db_path is None else f" --db {db_path}"
    print(f"katib-metrics run: {plural(kept, 'row')} of trial {options.trial} kept in {db_path}; send them "
          f"again with: katib-metrics show {options.trial}{db} --resend", file=sys.stderr)


def run_command(options: RunOptions, *, out: BinaryIO | None = None, err: BinaryIO | None = None,
                summary: TextIO | None = None) -> int:
    """Run, collect, report, print the table; returns the exit status."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    summary = cast(TextIO, QuietText(summary or sys.stdout))
    capture = options.path is None and not options.prometheus_url
    env = {**os.environ, **dict(options.env), "KATIB_TRIAL_NAME": options.trial}
    try:
        refused = _check_trial(options)
    except StoreError as error:
        refused = str(error)
    if refused is not None:
        print(f"katib-metrics run: error: {refused}", file=sys.stderr)
        return 2
    tee = LineEnd(err if options.output == "json" else out)  # stdout holds only the JSON then
    head = OutputHead()  # the output's first MiBs: a diagnosis of what is unavailable reads them again
    started = time.time()
    try:  # push mode: the command may report to a db-manager itself (katib_metrics.report_metrics)
        pushed = PushedRows.start(options.trial, options.db_manager, options.db_path,
                                  timeout=min(30.0, options.report_timeout))
    except (StoreError, OSError) as error:
        print(f"katib-metrics run: error: {error}", file=sys.stderr)
        return 1
    try:
        proc = subprocess.Popen(options.command, env={**env, **pushed.env},
                                stdout=subprocess.PIPE if capture else (2 if options.output == "json" else None),
                                stderr=subprocess.STDOUT if capture else None)
    except OSError as error:
        pushed.stop()
        print(f"katib-metrics run: error: cannot run {options.command[0]!r}: {error.strerror}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126
    stats = ParseStats()
    store = MetricStore(options.spec, stats=stats)
    source = _source(options, proc, stats, cast(LineEnd, head.tee(tee)))
    early = EarlyStop.for_rules(options.stop_rules, options.spec, grace=options.stop_grace,
                                root_pid=proc.pid) if options.stop_rules else None
    pipeline = Pipeline(early.watch(source) if early is not None else source, store).start()
    with _signals(proc):
        returncode = proc.wait()
    if isinstance(source, ParsedLines) and isinstance(source.lines, ProcessOutput):
        source.lines.command_exited()
        source.lines.join()  # the pipes' last bytes are queued before the final drain
        if left := source.lines.left_open:
            print(f"katib-metrics run: warning: the command ended, but process(es) it left running still hold its "
                  f"output open: {', '.join(left)}; what they write from now on is not read (they are not "
                  f"stopped)", file=sys.stderr)
    pipeline.stop()
    source.close()
    pushed.finish(store)  # what the command reported itself counts in the table (and the objective)
    status = _exit_status(returncode)
    if pipeline.problem:  # said, and the exit status shows it: never a silent `unavailable`
        print(f"katib-metrics run: error: {pipeline.problem}", file=sys.stderr)
        status = status or 1
    tee.end_line()
    try:
        delivery, where = _report(store, options, started)
    except (ReportError, StoreError, OSError) as error:
        print(f"katib-metrics run: error: {error}", file=sys.stderr)
        if isinstance(error, ReportError) and options.db_manager:
            _keep(store, options, started)
        return status or 1
    finally:
        why = explain_safely(options.spec, str(options.path or ""), store.summaries(),
                             head=None if options.path or options.prometheus_url else head.data,
                             regex_timeout=options.regex_timeout)
        write_results(store, options.trial, options.output, summary, diagnosis=why.to_json())
        print_explanation(why, "katib-metrics run", sys.stderr)
        store.close()
    stored = f"trial {options.trial}: {plural(delivery.rows + pushed.count, 'row')} stored in {where}\n"
    (sys.stderr if options.output == "json" else summary).write(stored)
    if early is not None and (stopped := early.summary()) is not None:
        early.finish()
        (sys.stderr if options.output == "json" else summary).write(f"trial {options.trial}: {stopped}\n")
        status = 0  # stopped on purpose, as Katib's wrapper: not a failure
    summary.flush()
    return status

