"""`katib-metrics run --experiment FILE [--param NAME=VALUE]...`: a Katib trial's collection and command, here.

The collection settings come from the Experiment as the sidecar would get them (flags given explicitly
win); the command is the one after `--`, or else the primary container's command and args from the trial
template, with `${trialParameters.NAME}` substituted and the container's literal `env` added. Whatever
cannot be honoured on this machine is a usage error naming the Experiment's field.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from katib_metrics.collector.flags import UsageError
from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.experiment import Experiment
from katib_metrics.parsers.experiment_file import load_experiment
from katib_metrics.parsers.experiment_flags import merge_flags, parse_params
from katib_metrics.parsers.filters import compile_filters
from katib_metrics.parsers.model import FileFormat
from katib_metrics.parsers.trialtemplate import local_command

if TYPE_CHECKING:  # run's module loads gRPC: only a real run pays for it
    from katib_metrics.collector.earlystop import StopRule
    from katib_metrics.collector.run import RunOptions

__all__ = ["add_experiment_options", "with_experiment"]


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", metavar="FILE",
                        help="collect as this Katib Experiment or Trial says (YAML or JSON, FILE#NAME for one of "
                             "several); without a command, run its primary container's command")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a trial parameter's value (by trial parameter or search-space name), substituted "
                             "for ${trialParameters.NAME}; repeatable")


def _flag_format(args: argparse.Namespace) -> FileFormat | None:
    if args.tfevent_dir:
        return FileFormat.TFEVENT
    return FileFormat(args.format.upper()) if args.format else None


def _local_path(experiment: Experiment, fmt: FileFormat) -> Path | None:
    """The Experiment's metrics file or event directory, when its directory exists here."""
    collector = experiment.collector
    if fmt not in (FileFormat.TEXT, FileFormat.JSON, FileFormat.TFEVENT) or collector.kind == "StdOut":
        return None
    path = Path(collector.path)
    if not path.parent.is_dir():
        raise UsageError(f"{experiment.where}: {collector.source_field}.fileSystemPath.path {collector.path}: "
                         f"{path.parent} does not exist here; give --path FILE (or --tfevent-dir DIR) and make the "
                         "training write there")
    return path


def _check_program(experiment: Experiment, argv: tuple[str, ...], where: str) -> None:
    """The image's program or script (an absolute path) must exist here to be run here."""
    interpreter = Path(argv[0]).name.startswith(("python", "bash", "sh", "node", "Rscript"))
    program = argv[1] if interpreter and len(argv) > 1 and not argv[1].startswith("-") else argv[0]
    if program.startswith("/") and not Path(program).exists():
        raise UsageError(f"{experiment.where}: {where} runs {program}, which is in the image, not on this machine: "
                         "give a local command after -- (${trialParameters.NAME} is substituted there too)")


def with_experiment(options: RunOptions, args: argparse.Namespace, command: list[str]) -> RunOptions:
    """`options` (from the flags) with the Experiment's spec, path, command and env; UsageError naming the field."""
    names = tuple(dict.fromkeys(n.strip() for text in args.metric for n in text.split(";") if n.strip()))
    try:
        experiment = load_experiment(args.experiment)
        # Push: the training reports to run's db-manager itself (its output is read as text besides).
        fmt = _flag_format(args) or (FileFormat.TEXT if experiment.collector.kind == "Push" else None)
        spec = merge_flags(experiment, names=names, filters=tuple(args.filter), fmt=fmt,
                           objective_type=args.objective_type)
        params = parse_params(args.param)
        compile_filters(spec.filters)
        planned = local_command(experiment, params, options.trial, command)
    except SpecError as err:
        raise UsageError(str(err)) from None
    url = None
    if spec.format is FileFormat.PROMETHEUS:  # the sidecar's scrape of the training container, here on localhost
        from katib_metrics.collector.sources.prometheus import scrape_url

        collector = experiment.collector
        if not collector.http_port.isdigit() or not collector.http_path.startswith("/"):
            raise UsageError(f"{experiment.where}: {collector.source_field}.httpGet: port {collector.http_port!r} "
                             f"and path {collector.http_path!r} must be a positive integer and start with /")
        url = scrape_url(int(collector.http_port), collector.http_path)
    if spec.format is FileFormat.JSON and spec.filters:
        raise UsageError("-f cannot be used with a JSON metrics file: JSON keys name the metrics")
    if not command:
        _check_program(experiment, planned.argv, planned.where)
    path = options.path if options.path is not None else _local_path(experiment, spec.format)
    rules = options.stop_rules or _trial_stop_rules(experiment)
    return dataclasses.replace(options, command=planned.argv, spec=spec, path=None if url else path,
                               env=tuple(planned.env.items()), stop_rules=rules, prometheus_url=url)


def _trial_stop_rules(experiment: Experiment) -> tuple[StopRule, ...]:
    """A Trial's `earlyStoppingRules` (what the webhook passes as `-stop-rule`), unless --stop-rule was given."""
    spec = experiment.raw.get("spec")
    rules = spec.get("earlyStoppingRules") if experiment.kind == "Trial" and isinstance(spec, Mapping) else None
    if not isinstance(rules, list):
        return ()
    from katib_metrics.collector.earlystop import parse_stop_rules

    texts = [f"{r.get('name', '')};{r.get('value', '')};{r.get('comparison', '')};{r.get('startStep') or 0}"
             for r in rules if isinstance(r, Mapping)]
    try:
        return parse_stop_rules(texts)
    except UsageError as err:
        raise UsageError(f"{experiment.where}: spec.earlyStoppingRules: {err}") from None
