"""`--experiment FILE` for `parse` and `run`: the Experiment's collection settings, with explicit flags winning.

Flags replace what the Experiment says, one setting at a time: `-m` the metric names, `-f` the
metricsFormat list, `--format` the format (the Experiment's filters then apply only to text),
`--objective-type` the type (strategies the Experiment did not write are re-derived from it, as Katib's
defaulter would), `--strategy` one metric's strategy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.experiment import Experiment
from katib_metrics.parsers.experiment_file import load_experiment
from katib_metrics.parsers.model import CollectorSpec, FileFormat, ObjectiveType, Strategy

__all__ = ["merge_flags", "parse_params", "spec_from_experiment"]


def merge_flags(
    experiment: Experiment,
    *,
    names: tuple[str, ...] = (),
    filters: tuple[str, ...] = (),
    fmt: FileFormat | None = None,
    objective_type: str | None = None,
    strategies: Mapping[str, Strategy] | None = None,
) -> CollectorSpec:
    """The Experiment's `CollectorSpec` with every explicitly given flag applied over it."""
    if fmt is None:
        base = experiment.spec()  # raises for kinds with nothing to parse (Push, Custom)
    else:  # the kind does not matter when the format is given
        base = CollectorSpec(experiment.metric_names, experiment.collector.filters, FileFormat.TEXT,
                             ObjectiveType.parse(experiment.objective_type), dict(experiment.spec_strategies()))
    fmt = fmt or base.format
    overrides = dict(base.strategy_overrides)
    kind = base.objective_type
    if objective_type is not None:
        kind = ObjectiveType.parse(objective_type)
        overrides = experiment.spec_strategies(explicit_only=True)
    overrides.update(strategies or {})
    chosen_filters = filters or (base.filters if fmt is FileFormat.TEXT else ())
    return CollectorSpec(names or base.metric_names, chosen_filters, fmt, kind, overrides)


def spec_from_experiment(
    path: str,
    *,
    names: tuple[str, ...] = (),
    filters: tuple[str, ...] = (),
    fmt: FileFormat | None = None,
    objective_type: str | None = None,
    strategies: Mapping[str, Strategy] | None = None,
) -> tuple[Experiment, CollectorSpec]:
    """Load `path` (`FILE#NAME` for one of several) and merge the flags; SpecError names what is wrong."""
    experiment = load_experiment(path)
    return experiment, merge_flags(experiment, names=names, filters=filters, fmt=fmt,
                                   objective_type=objective_type, strategies=strategies)


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """`--param NAME=VALUE` items; a later one wins. SpecError for an item without `=` or a name."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"--param {item!r}: expected NAME=VALUE, e.g. --param lr=0.01")
        values[name.strip()] = value
    return values
