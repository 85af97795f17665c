"""`katib-metrics trials`: the trials of the local store, best objective first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from katib_metrics.collector.dbmanager.store import StoreError
from katib_metrics.collector.results import TrialData, best_first, existing_db, load_all
from katib_metrics.parsers.table import plural, render

__all__ = ["main"]

HEADER = ("TRIAL", "CREATED", "ROWS", "OBJECTIVE", "STRATEGY", "VALUE")

EPILOG = """\
CREATED is when `katib-metrics run` started the trial (UTC), or its first row's time for rows reported
by other tools. VALUE is the objective's value by its strategy, as Katib's experiment controller takes
it; trials are listed best first, each by its own --objective-type, then those without one.
`katib-metrics show TRIAL...` prints a trial's metrics, side by side with others, or plots them."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="List the trials of the local store: name, when, rows and "
                     "the objective's value, best first.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", metavar="FILE", help="the local store's SQLite file (default: user data dir)")
    parser.add_argument("--output", choices=["table", "json"], default="table", type=str.lower,
                        help="table for people (default) or one JSON object per trial, one per line")
    return parser


def _cells(trial: TrialData, rows: int) -> tuple[str, ...]:
    created = trial.info.created[:19].replace("T", " ") if trial.info else ""
    objective = trial.spec.objective
    summary = next((s for s in trial.summaries() if s.name == objective), None)
    if summary is None:
        return (trial.name, created, str(rows), "-", "-", "-")
    return (trial.name, created, str(rows), summary.name, str(summary.strategy), summary.value)


def _json(trial: TrialData, rows: int) -> str:
    name, _, _, objective, strategy, value = _cells(trial, rows)
    return json.dumps({"trial_name": name, "created": trial.info.created if trial.info else "", "rows": rows,
                       "objective": objective, "objective_type": str(trial.spec.objective_type),
                       "strategy": strategy, "value": value,
                       "resend_to": trial.info.resend_to if trial.info else ""})


def main(argv: list[str], prog: str = "katib-metrics trials") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        db_path = existing_db(args.db)
        counted = load_all(db_path) if db_path.exists() else []
    except StoreError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2 if args.db else 1
    counts = {trial.name: count for trial, count in counted}
    ordered = best_first([trial for trial, _ in counted])
    if args.output == "json":
        for trial in ordered:
            print(_json(trial, counts[trial.name]))
        return 0
    if not ordered:
        print(f"no trials in {db_path} yet: `katib-metrics run -- COMMAND` collects one")
        return 0
    print(render(HEADER, [_cells(trial, counts[trial.name]) for trial in ordered]))
    pending = [trial.name for trial in ordered if trial.info and trial.info.resend_to]
    for name in pending:
        print(f"trial {name} did not reach its db-manager: `katib-metrics show {name} --resend` sends it again",
              file=sys.stderr)
    print(f"{plural(len(ordered), 'trial')} in {db_path}", file=sys.stderr)
    return 0
