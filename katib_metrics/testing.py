"""Check a training's metrics in your own tests: collect a log or a command's output as Katib's collector would.

    from katib_metrics.testing import assert_collected, collect_text

    observation = collect_text("epoch=1 accuracy=0.91\\n", metrics=["accuracy"])
    assert_collected(observation, "accuracy")
    assert observation.value("accuracy") == 0.91

`collect` reads a file or event directory, `collect_text` a string, `run_training` runs a command and reads
its output (or the file it writes). The spec comes from flags-like arguments or from a Katib Experiment
(`experiment="experiment.yaml"`, explicit arguments win). `assert_collected` fails with the diagnosis of
`katib-metrics parse`: why a metric is unavailable and a fix verified on the same input. The pytest plugin
(`katib_metrics.pytest_plugin`, registered as an entry point) offers all of this as the `katib_metrics` fixture.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO, cast

from katib_metrics.parsers.diagnosis import Diagnosis, format_diagnosis
from katib_metrics.parsers.diagnosis_report import explain
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import (
    UNAVAILABLE,
    CollectorSpec,
    FileFormat,
    MetricLog,
    MetricSummary,
    ObjectiveType,
    Strategy,
)
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.observation import unavailable_rows
from katib_metrics.parsers.strategies import reduce_logs
from katib_metrics.parsers.stream import scan

__all__ = [
    "MetricsNotCollected",
    "Observation",
    "assert_collected",
    "collect",
    "collect_text",
    "make_spec",
    "run_training",
]

MAX_OUTPUT = 8 << 20  # bytes of a command's output kept in `Observation.output`


class MetricsNotCollected(AssertionError):
    """A metric has fewer values than expected; the message is the diagnosis."""


@dataclass(frozen=True)
class Observation:
    """What the collector would record from one input: its rows, the per-metric summaries, the diagnosis."""

    spec: CollectorSpec
    source: str
    metric_logs: tuple[MetricLog, ...]
    metrics: tuple[MetricSummary, ...]
    diagnosis: tuple[Diagnosis, ...] = ()
    warnings: tuple[str, ...] = ()
    output: str = ""  # a command's output (`run_training`), at most its first 8 MiB
    returncode: int | None = None  # a command's exit status (`run_training`)
    _by_name: Mapping[str, MetricSummary] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, name: str) -> MetricSummary:
        """The summary of `name` (min, max, latest, count, strategy, value); an empty one if never seen."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        if name in self.spec.metric_names:
            return MetricSummary(name, strategy=self.spec.strategy_for(name))
        raise KeyError(f"{name!r} was not collected; collected: {', '.join(self._by_name) or 'nothing'}")

    def count(self, name: str) -> int:
        """How many values of `name` were collected."""
        return self[name].count if name in self._by_name or name in self.spec.metric_names else 0

    def value(self, name: str) -> float | None:
        """The value Katib's experiment controller would take for `name` (by its strategy); None if unavailable."""
        text = self[name].value
        return None if text == UNAVAILABLE else parse_go_float(text)

    def values(self, name: str) -> list[float]:
        """Every value of `name`, in order."""
        return [number for log in self.metric_logs
                if log.name == name and (number := parse_go_float(log.value)) is not None]

    def explain(self) -> str:
        """The warnings and diagnosis, as `katib-metrics parse` prints them."""
        lines = [f"warning: {warning}" for warning in self.warnings]
        for diagnosis in self.diagnosis:
            lines += format_diagnosis(diagnosis)
        return "\n".join(lines)


def make_spec(
    metrics: Sequence[str] = (),
    *,
    filters: Sequence[str] = (),
    format: str | FileFormat | None = None,
    objective_type: str | None = None,
    strategies: Mapping[str, str] | None = None,
    experiment: str | os.PathLike[str] | None = None,
    default_format: FileFormat = FileFormat.TEXT,
) -> CollectorSpec:
    """A collector spec from flags-like arguments, over an Experiment's when `experiment` is given."""
    base = CollectorSpec(format=default_format)
    if experiment is not None:
        from katib_metrics.parsers.experiment_file import load_experiment

        base = load_experiment(os.fspath(experiment)).spec()
    fmt = FileFormat(format.upper()) if isinstance(format, str) else format or base.format
    overrides = {name: Strategy(value) for name, value in (strategies or {}).items()}
    return CollectorSpec(
        metric_names=tuple(metrics) or base.metric_names,
        filters=tuple(filters) or (base.filters if fmt is FileFormat.TEXT else ()),
        format=fmt,
        objective_type=ObjectiveType.parse(objective_type) if objective_type else base.objective_type,
        strategy_overrides={**base.strategy_overrides, **overrides},
    )


def collect(path: str | os.PathLike[str], metrics: Sequence[str] = (), **spec_args: object) -> Observation:
    """Collect a log file (TEXT, JSON, Prometheus text) or a TensorFlow event directory, as the collector would.

    Keyword arguments are those of `make_spec` (`filters`, `format`, `objective_type`, `strategies`,
    `experiment`); a directory is read as event files unless `format` says otherwise.
    """
    path = os.fspath(path)
    default = FileFormat.TFEVENT if os.path.isdir(path) else FileFormat.TEXT
    spec = make_spec(metrics, default_format=default, **spec_args)  # type: ignore[arg-type]
    return _observe(spec, path, _read(spec, path))


def collect_text(text: str | bytes, metrics: Sequence[str] = (), **spec_args: object) -> Observation:
    """Collect a log given as a string (TEXT, JSON lines or Prometheus text), as the collector would."""
    data = text.encode() if isinstance(text, str) else text
    spec = make_spec(metrics, **spec_args)  # type: ignore[arg-type]
    return _observe(spec, "-", _read_bytes(spec, data), head=data)


def run_training(
    command: Sequence[str],
    metrics: Sequence[str] = (),
    *,
    path: str | os.PathLike[str] | None = None,
    timeout: float = 600.0,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **spec_args: object,
) -> Observation:
    """Run `command` and collect its stdout and stderr (Katib's StdOut collector), or `path` if given.

    The command's exit status is in `returncode`, its output in `output`; a command that runs past
    `timeout` seconds raises `subprocess.TimeoutExpired`.
    """
    default = FileFormat.TFEVENT if path is not None and os.path.isdir(path) else FileFormat.TEXT
    spec = make_spec(metrics, default_format=default, **spec_args)  # type: ignore[arg-type]
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(list(command), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, timeout=timeout,
                              env=None if env is None else {**os.environ, **env}, check=False)
        out.seek(0)
        head = out.read(MAX_OUTPUT)
        out.seek(0)
        observation = (_observe(spec, os.fspath(path), _read(spec, os.fspath(path))) if path is not None
                       else _observe(spec, "", _scan(spec, cast(BinaryIO, out)), head=head))
    return replace(observation, output=head.decode("utf-8", "replace"), returncode=done.returncode)


def assert_collected(observation: Observation, *names: str, at_least: int = 1) -> None:
    """Fail, with the diagnosis, unless each metric (default: every one requested) has `at_least` values."""
    __tracebackhide__ = True  # pytest shows the test's line and this message, not this function's body
    wanted = names or observation.spec.metric_names or tuple(s.name for s in observation.metrics)
    short = [(name, observation.count(name)) for name in wanted if observation.count(name) < at_least]
    if not wanted:
        short = [("any metric", 0)]
    if short:
        said = "; ".join(f"{name}: {count} value{'' if count == 1 else 's'}" for name, count in short)
        where = {"-": "the text given", "": "the command's output"}.get(observation.source, observation.source)
        message = f"expected at least {at_least} value(s) from {where}, got {said}"
        explanation = observation.explain()
        raise MetricsNotCollected(message + ("\n" + explanation if explanation else ""))


def _read(spec: CollectorSpec, path: str) -> Iterator[MetricLog]:
    if spec.format is FileFormat.TFEVENT:
        from katib_metrics.parsers.tfevent import read_event_dir

        yield from read_event_dir(path, spec)
        return
    with open(path, "rb") as stream:
        yield from _read_bytes(spec, stream.read()) if spec.format is FileFormat.PROMETHEUS else _scan(spec, stream)


def _read_bytes(spec: CollectorSpec, data: bytes) -> Iterator[MetricLog]:
    if spec.format is FileFormat.PROMETHEUS:
        from katib_metrics.parsers.model import ZERO_TIME
        from katib_metrics.parsers.prometheus import parse_exposition

        yield from parse_exposition(data.decode("utf-8", "replace"), spec, ZERO_TIME)
        return
    yield from _scan(spec, io.BytesIO(data))


def _scan(spec: CollectorSpec, stream: BinaryIO) -> Iterator[MetricLog]:
    for logs in scan(stream, make_line_parser(spec)):
        yield from logs


def _observe(spec: CollectorSpec, source: str, logs: Iterable[MetricLog], head: bytes | None = None) -> Observation:
    rows = list(logs)
    rows += unavailable_rows(spec, {row.name for row in rows})
    summaries = reduce_logs(spec, rows)
    why = explain(spec, source, summaries, head=head)
    return Observation(spec, source, tuple(rows), tuple(summaries), why.diagnoses, why.warnings,
                       _by_name={s.name: s for s in summaries})


