"""Rows a db-manager did not take: kept in the local store by `run`, sent again by `show TRIAL --resend`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from katib_metrics.collector.dbmanager.store import ObservationStore, StoreError, TrialInfo
from katib_metrics.collector.results import UnknownTrial, existing_db, load_local
from katib_metrics.parsers.durations import parse_duration
from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.observation import batches
from katib_metrics.parsers.table import plural

__all__ = ["keep_locally", "resend_main"]

RESEND_BATCH = 50_000  # rows read from the store per report: memory holds one batch, not the trial


def keep_locally(db_path: Path, info: TrialInfo, rows: Iterable[MetricLog], chunk: int = 5000) -> int:
    """Store `rows` under the trial in the local store, marked for resending to `info.resend_to`."""
    store = ObservationStore(db_path)
    kept = 0
    try:
        batch: list[MetricLog] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= chunk:
                kept += store.report(info.name, batch)
                batch = []
        kept += store.report(info.name, batch)
        store.record_trial(info)
    finally:
        store.close()
    return kept


def _send(db_path: Path, name: str, address: str, timeout: float) -> int:
    from katib_metrics.collector.report import DBManagerReporter  # gRPC only when sending

    (trial,) = load_local(db_path, [name])
    started, sent = time.monotonic(), 0
    with DBManagerReporter(address, report_timeout=timeout) as reporter:  # a batch at a time, one shared budget
        for batch in batches(trial.rows, RESEND_BATCH):
            sent += reporter.report(name, batch, budget=max(timeout - (time.monotonic() - started), 0.1)).rows
    if trial.info is not None and trial.info.resend_to:
        store = ObservationStore(db_path)
        try:
            store.record_trial(replace(trial.info, resend_to=""))
        finally:
            store.close()
    return sent


def resend_main(args: argparse.Namespace, prog: str) -> int:
    """`show TRIAL... --resend [HOST:PORT]`: each trial's local rows to HOST:PORT, or where they failed to go."""
    from katib_metrics.collector.report import ReportError

    timeout = parse_duration(args.timeout)
    status = 0
    try:
        db_path = existing_db(args.db)
        for name in args.trials:
            (trial,) = load_local(db_path, [name])
            address = args.resend or (trial.info.resend_to if trial.info else "")
            if not address:
                print(f"{prog}: error: trial {name!r} has no db-manager to resend to: give one, "
                      f"--resend HOST:PORT", file=sys.stderr)
                return 2
            try:
                sent = _send(db_path, name, address, timeout)
            except ReportError as err:
                print(f"{prog}: error: {err}", file=sys.stderr)
                status = 1
                continue
            print(f"trial {name}: {plural(sent, 'row')} sent to db-manager {address}")
    except (StoreError, UnknownTrial) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return status
