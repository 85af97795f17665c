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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TextIO

from katib_metrics.collector.dbmanager import StoreError, default_db_path, serve
from katib_metrics.collector.delivery import Delivery, deliver
from katib_metrics.collector.earlystop import DEFAULT_STOP_GRACE, StopRule
from katib_metrics.collector.pipeline import ParsedLines, Pipeline, open_source
from katib_metrics.collector.report import ReportError
from katib_metrics.collector.sources.base import LogSource
from katib_metrics.collector.sources.pipe import ProcessOutput
from katib_metrics.collector.stopper import EarlyStop
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import CollectorSpec, MetricSummary
from katib_metrics.parsers.stats import ParseStats

__all__ = ["RunOptions", "default_trial_name", "format_table", "run_command"]

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


def _source(options: RunOptions, proc: subprocess.Popen[bytes], stats: ParseStats,
            out: BinaryIO, err: BinaryIO) -> LogSource:
    if options.path is not None:
        return open_source(options.spec, path=options.path, stats=stats, regex_timeout=options.regex_timeout)
    assert proc.stdout is not None and proc.stderr is not None
    parser = make_line_parser(options.spec, regex_timeout=options.regex_timeout, stats=stats)
    return ParsedLines(ProcessOutput([(proc.stdout, out), (proc.stderr, err)]), parser)


def _report(store: MetricStore, options: RunOptions) -> tuple[Delivery, str]:
    if options.db_manager:
        return deliver(store, options.trial, options.db_manager, budget=options.report_timeout), \
            f"db-manager {options.db_manager}"
    db_path = options.db_path or default_db_path()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    server = serve("127.0.0.1:0", db_path)
    try:
        return deliver(store, options.trial, server.address, budget=options.report_timeout), f"{db_path}"
    finally:
        server.stop(grace=5)


def format_table(summaries: Sequence[MetricSummary]) -> str:
    """One row per metric: min, max, latest and the count of values (for people, not parsers)."""
    header = ("metric", "min", "max", "latest", "count")
    rows = [header] + [(s.name, s.min, s.max, s.latest, str(s.count)) for s in summaries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def run_command(options: RunOptions, *, out: BinaryIO | None = None, err: BinaryIO | None = None,
                summary: TextIO | None = None) -> int:
    """Run, collect, report, print the table; returns the exit status."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    summary = summary or sys.stdout
    capture = options.path is None
    env = {**os.environ, "KATIB_TRIAL_NAME": options.trial}
    try:
        proc = subprocess.Popen(options.command, env=env, stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
    except OSError as error:
        print(f"katib-metrics run: error: cannot run {options.command[0]!r}: {error.strerror}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126
    stats = ParseStats()
    store = MetricStore(options.spec, stats=stats)
    source = _source(options, proc, stats, out, err)
    early = EarlyStop.for_rules(options.stop_rules, options.spec, grace=options.stop_grace,
                                root_pid=proc.pid) if options.stop_rules else None
    pipeline = Pipeline(early.watch(source) if early is not None else source, store).start()
    with _signals(proc):
        returncode = proc.wait()
    if isinstance(source, ParsedLines) and isinstance(source.lines, ProcessOutput):
        source.lines.join()  # the pipes' last bytes are queued before the final drain
    pipeline.stop()
    source.close()
    status = _exit_status(returncode)
    try:
        delivery, where = _report(store, options)
    except (ReportError, StoreError, OSError) as error:
        print(f"katib-metrics run: error: {error}", file=sys.stderr)
        return status or 1
    finally:
        summary.write(format_table(store.summaries()) + "\n")
        store.close()
    summary.write(f"trial {options.trial}: {delivery.rows} rows stored in {where}\n")
    if early is not None and (stopped := early.summary()) is not None:
        early.finish()
        summary.write(f"trial {options.trial}: {stopped}\n")
        status = 0  # stopped on purpose, as Katib's wrapper: not a failure
    summary.flush()
    return status

