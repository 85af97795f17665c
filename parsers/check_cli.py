"""`katib-metrics check EXPERIMENT [LOG]`: will this Experiment collect its objective (from this log)?

Validates the Experiment as Katib's validating webhook would (errors), lists known pitfalls (warnings),
and with LOG parses it exactly as the sidecar would with the Experiment's settings, prints what would be
recorded, and diagnoses every metric left without a value. Exit 0 when the objective would be collected,
1 when not (or Katib would reject the Experiment), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, NoReturn, cast

from katib_metrics.parsers.check_pitfalls import pitfalls
from katib_metrics.parsers.check_rules import Finding, katib_errors
from katib_metrics.parsers.diagnosis import DEFAULT_MAX_BYTES
from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.experiment import Experiment
from katib_metrics.parsers.experiment_file import load_experiment
from katib_metrics.parsers.input_checks import HeadKeeper
from katib_metrics.parsers.model import UNAVAILABLE, CollectorSpec, FileFormat, MetricLog, MetricSummary
from katib_metrics.parsers.stats import ParseStats
from katib_metrics.parsers.table import summary_table

__all__ = ["main"]

EPILOG = """\
examples:
  katib-metrics check experiment.yaml                 # what Katib rejects, and known pitfalls
  katib-metrics check experiment.yaml train.log       # ... and what the sidecar would collect from this log
  katib-metrics check trials.yaml#my-experiment logs/ --output json
  python train.py 2>&1 | katib-metrics check experiment.yaml -

exit status: 0 the objective would be collected (or, without LOG, nothing stops it), 1 it would not or
Katib would reject the Experiment, 2 usage error.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _build(prog: str) -> _Parser:
    parser = _Parser(prog=prog, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Check a Katib Experiment's metrics collection before submitting it.")
    parser.add_argument("experiment", metavar="FILE", help="Experiment or Trial, YAML or JSON (FILE#NAME: one of "
                        "several)")
    parser.add_argument("log", metavar="LOG", nargs="?",
                        help="a training log, JSON lines file, exposition or event directory to collect from "
                        "(- for standard input)")
    parser.add_argument("--output", choices=["text", "json"], default="text", type=str.lower,
                        help="text for people (default) or one JSON object")
    return parser


def _collector_text(exp: Experiment) -> str:
    c = exp.collector
    what = {"StdOut": "the training's output", "File": c.path, "TensorFlowEvent": f"event files in {c.path}",
            "PrometheusMetric": f"http://localhost:{c.http_port}{c.http_path}"}.get(c.kind, "")
    fmt = c.file_format if c.kind == "File" else "TEXT" if c.kind == "StdOut" else ""
    filters = ", ".join(c.filters) if c.filters else "Katib's default name=value filter" if fmt == "TEXT" else ""
    return ", ".join(part for part in (c.kind or "(no kind)", what, fmt, filters) if part)


def _strategies(exp: Experiment) -> dict[str, str]:
    """Each requested metric's strategy in -m order (the first metricStrategies entry of a name wins)."""
    first: dict[str, str] = {}
    for name, value in exp.strategies:
        first.setdefault(name, value)
    return {name: first.get(name, "?") for name in exp.metric_names}


def _metrics_text(exp: Experiment) -> str:
    strategies = _strategies(exp)
    parts = [f"{name} ({'objective, ' if name == exp.objective_metric else ''}{strategies.get(name, '?')})"
             for name in exp.metric_names]
    return ", ".join(parts) or "(none)"


def _log_spec(parser: _Parser, exp: Experiment, log: str) -> CollectorSpec:
    try:
        spec = exp.spec()
    except SpecError as err:
        parser.error(f"cannot collect from {log}: {err}")
    if log == "-":
        if spec.format is FileFormat.TFEVENT:
            parser.error("an event directory cannot be read from standard input: give the directory as LOG")
        return spec
    if not os.path.exists(log):
        parser.error(f"{log}: no such file or directory")
    if os.path.isdir(log) != (spec.format is FileFormat.TFEVENT):
        want = "an event directory" if spec.format is FileFormat.TFEVENT else "a file"
        parser.error(f"{log}: the Experiment's collector ({exp.collector.kind}) reads {want}")
    return spec


def _collect(spec: CollectorSpec, log: str, stats: ParseStats, keep: HeadKeeper | None) -> list[MetricSummary]:
    from katib_metrics.parsers.observation import unavailable_rows
    from katib_metrics.parsers.strategies import Reducer

    reducer = Reducer(spec)
    for logs in _batches(spec, log, stats, keep):
        reducer.add_all(logs)
    reducer.add_all(unavailable_rows(spec, reducer.seen()))
    return reducer.summaries()


def _batches(spec: CollectorSpec, log: str, stats: ParseStats, keep: HeadKeeper | None
             ) -> Iterator[Sequence[MetricLog]]:
    """The rows of the log, a block at a time (standard input through `keep`, which holds its head)."""
    if spec.format is FileFormat.TFEVENT:
        from katib_metrics.parsers.tfevent import EventDirReader

        reader = EventDirReader(log, spec, stats)
        yield from reader.iter_batches()
        reader.report_incomplete_tails()
        return
    with cast(BinaryIO, keep) if keep is not None else open(log, "rb") as stream:
        if spec.format is FileFormat.PROMETHEUS:
            from katib_metrics.parsers.model import ZERO_TIME
            from katib_metrics.parsers.prometheus import line_count, parse_exposition

            text = stream.read().decode("utf-8", "replace")
            stats.lines += line_count(text)
            yield parse_exposition(text, spec, ZERO_TIME, stats, None)
            return
        from katib_metrics.parsers.lines import make_line_parser
        from katib_metrics.parsers.stream import scan

        yield from scan(stream, make_line_parser(spec, stats=stats))


def _check_log(parser: _Parser, exp: Experiment, log: str, report: dict[str, Any]) -> tuple[bool, str]:
    from katib_metrics.parsers.diagnosis_report import explain

    spec, stats = _log_spec(parser, exp, log), ParseStats()
    keep = HeadKeeper(os.fdopen(os.dup(sys.stdin.fileno()), "rb"), DEFAULT_MAX_BYTES) if log == "-" else None
    try:
        summaries = _collect(spec, log, stats, keep)
    except SpecError as err:
        return False, f"the log cannot be parsed with this Experiment: {err}"
    except OSError as err:
        print(f"{parser.prog}: error: cannot read {log}: {err.strerror or err}", file=sys.stderr)
        raise SystemExit(1) from None
    why = explain(spec, log, summaries, head=None if keep is None else bytes(keep.head))
    report["log"] = {"path": log, "lines": stats.lines, "values": sum(stats.values.values()),
                     "skipped": dict(stats.skipped), "observation": {"metrics": [s.to_dict() for s in summaries]}}
    report["diagnosis"] = why.to_json()
    report["_text"] = [f"log: {log}: {stats.lines} lines read, {sum(stats.values.values())} values recorded",
                       summary_table(summaries), *why.lines()]
    objective = next(s for s in summaries if s.name == exp.objective_metric)
    if objective.latest == UNAVAILABLE:
        return False, f"the objective {exp.objective_metric} would be unavailable (the trial ends MetricsUnavailable)"
    return True, (f"the objective {exp.objective_metric} would be collected: {objective.value} by "
                  f"{objective.strategy} ({objective.count} value{'' if objective.count == 1 else 's'})")


def _verdict(findings: list[Finding], exp: Experiment, log_result: tuple[bool, str] | None) -> tuple[bool, str]:
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        return False, f"Katib would reject this {exp.kind} ({len(errors)} error{'s' if len(errors) > 1 else ''})"
    blocking = [f for f in findings if f.blocks_objective]
    if blocking:
        return False, f"the objective {exp.objective_metric} could never be collected: {blocking[0].message}"
    if log_result is not None:
        return log_result
    if exp.collector.kind in ("Push", "Custom"):
        return True, f"Katib accepts it; kind {exp.collector.kind} collects in its own way (no log to check here)"
    return True, "Katib accepts it; give a training log as LOG to check what would be collected"


def _header(exp: Experiment) -> list[str]:
    lines = [f"{exp.where}: {exp.title}", f"  collector: {_collector_text(exp)}",
             f"  metrics:   {_metrics_text(exp)}"]
    if exp.collector.kind in ("StdOut", "File", "TensorFlowEvent"):
        lines.append(f"  sidecar:   {shlex.join(exp.sidecar_args())}")
    return lines


def main(argv: list[str], prog: str = "katib-metrics check") -> int:
    parser = _build(prog)
    args = parser.parse_args(argv)
    try:
        exp = load_experiment(args.experiment)
    except SpecError as err:
        parser.error(str(err))
    findings = [*katib_errors(exp), *pitfalls(exp)]
    report: dict[str, Any] = {
        "file": exp.where, "kind": exp.kind, "name": exp.name, "namespace": exp.namespace,
        "collector": {"kind": exp.collector.kind, "path": exp.collector.mount()[0],
                      "metricsFormat": list(exp.collector.filters), "sidecar_args": exp.sidecar_args()},
        "metrics": [{"name": n, "objective": n == exp.objective_metric, "strategy": s}
                    for n, s in _strategies(exp).items()],
        "errors": [f.to_dict() for f in findings if f.severity == "error"],
        "warnings": [f.to_dict() for f in findings if f.severity == "warning"],
        "log": None, "diagnosis": [],
    }
    log_result = None
    if args.log:
        rejected = any(f.severity == "error" for f in findings)
        try:
            exp.spec()
        except SpecError as err:
            if not rejected:  # Push, Custom: nothing to collect from a log
                parser.error(f"cannot collect from {args.log}: {err}")
            report["_text"] = [f"log: {args.log}: not collected: {err}"]
        else:
            log_result = _check_log(parser, exp, args.log, report)
    ok, verdict = _verdict(findings, exp, log_result)
    text = report.pop("_text", [])
    report.update(ok=ok, verdict=verdict)
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print("\n".join([*_header(exp), *(f.line() for f in findings), *text,
                         f"{'OK' if ok else 'FAIL'}: {verdict}"]))
    return 0 if ok else 1
