"""A Katib Experiment (or Trial) read as the sidecar would see it: metric names, strategies, collector (pure).

`experiment_from_object(obj)` applies Katib's experiment defaulter (`setDefaultObjective`,
`setDefaultMetricsCollector`) to an Experiment or Trial (a dict) and returns an `Experiment`
(`parsers.experiment_file` reads one from a YAML or JSON file). `Experiment.spec()`
is the `CollectorSpec` the webhook's `-m`, `-o-type`, `-f` and `-format` would give the sidecar;
`sidecar_args()` are those arguments. Kinds a local parse cannot honour (Push, Custom) raise
`ExperimentError` naming the field. YAML needs PyYAML, imported only when a file is not JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.model import (
    DEFAULT_METRICS_FILE,
    DEFAULT_TFEVENT_DIR,
    CollectorSpec,
    FileFormat,
    ObjectiveType,
    Strategy,
)

__all__ = [
    "KINDS",
    "Collector",
    "Experiment",
    "ExperimentError",
    "TrialTemplate",
    "experiment_from_object",
]

KINDS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = "8080"


class ExperimentError(SpecError):
    """The Experiment file cannot be read, or asks for something this command cannot honour."""


@dataclass(frozen=True, slots=True)
class Collector:
    """`metricsCollectorSpec` after Katib's defaulting; `field` is where it was found (for messages)."""

    kind: str
    field: str
    path: str = ""
    path_kind: str = ""
    file_format: str = ""
    has_file_system_path: bool = False
    filters: tuple[str, ...] = ()
    has_filter: bool = False
    http_port: str = ""
    http_path: str = ""
    has_custom_collector: bool = False

    @property
    def source_field(self) -> str:
        return f"{self.field}.source"

    def mount(self) -> tuple[str, str]:
        """Katib's `getMountPath`: the metrics path and "File"/"Directory", or ("", "Invalid")."""
        if self.kind == "StdOut":
            return DEFAULT_METRICS_FILE, "File"
        if self.kind == "File" and self.path:
            return self.path, "File"
        if self.kind == "TensorFlowEvent" and self.path:
            return self.path, "Directory"
        if self.kind == "Custom" and self.path:
            return self.path, self.path_kind or "Invalid"
        return "", "Invalid"


@dataclass(frozen=True, slots=True)
class TrialTemplate:
    """What `run` needs from `trialTemplate` (an Experiment) or `runSpec` (a Trial, already substituted)."""

    primary_container: str
    trial_spec: Mapping[str, Any] | None
    field: str
    parameters: tuple[tuple[str, str], ...] = ()  # trialParameters: (name, reference)
    search_space: tuple[str, ...] = ()  # spec.parameters[].name
    config_map: str = ""  # trialTemplate.configMap, when the template is not inline
    primary_pod_labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Experiment:
    """The parts of an Experiment or Trial that decide what is collected, as Katib's defaulter leaves them."""

    where: str
    kind: str  # "Experiment" or "Trial"
    name: str
    namespace: str
    objective_metric: str
    additional_metrics: tuple[str, ...]
    objective_type: str  # verbatim: Katib's validator decides whether it is valid
    strategies: tuple[tuple[str, str], ...]  # (metric, min|max|latest) after defaulting, in Katib's order
    collector: Collector
    template: TrialTemplate | None
    explicit_strategies: tuple[tuple[str, str], ...] = ()  # metricStrategies as written, before defaulting
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def spec_field(self) -> str:
        return "spec"

    @property
    def metric_names(self) -> tuple[str, ...]:
        names = [self.objective_metric] if self.objective_metric else []
        return tuple(dict.fromkeys([*names, *self.additional_metrics]))

    @property
    def title(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where or '(unnamed)'}"

    def file_format(self) -> FileFormat:
        """The format the sidecar would read; ExperimentError for kinds with nothing to parse here."""
        kind, collector = self.collector.kind, self.collector
        if kind == "StdOut":
            return FileFormat.TEXT
        if kind == "File":
            if collector.file_format in ("TEXT", "JSON"):
                return FileFormat(collector.file_format)
            raise ExperimentError(f"{self.where}: {collector.source_field}.fileSystemPath.format "
                                  f"{collector.file_format!r} must be TEXT or JSON (Katib rejects it too)")
        if kind == "TensorFlowEvent":
            return FileFormat.TFEVENT
        if kind == "PrometheusMetric":
            return FileFormat.PROMETHEUS
        if kind == "Push":
            raise ExperimentError(f"{self.where}: {collector.field}.collector.kind Push: the training reports "
                                  "its metrics itself, there is no log to collect; give -m and --format to parse one")
        if kind == "Custom":
            raise ExperimentError(f"{self.where}: {collector.field}.collector.kind Custom: a custom collector "
                                  "parses in its own way; give -m, -f and --format to parse as the built-in kinds do")
        raise ExperimentError(f"{self.where}: {collector.field}.collector.kind {kind!r} is not a metrics collector "
                              f"kind (Katib rejects it; known: {', '.join(KINDS)})")

    def spec(self) -> CollectorSpec:
        """`-m`, `-o-type`, `-f`, `-format` as the webhook gives them to the sidecar, plus the strategies."""
        fmt = self.file_format()
        filters = self.collector.filters if fmt is FileFormat.TEXT else ()
        return CollectorSpec(self.metric_names, filters, fmt, ObjectiveType.parse(self.objective_type),
                             self.spec_strategies())

    def spec_strategies(self, explicit_only: bool = False) -> dict[str, Strategy]:
        """metricStrategies as `Strategy` values (the first entry of a name wins, as in Katib's map)."""
        if not self.objective_metric:
            raise ExperimentError(f"{self.where}: spec.objective.objectiveMetricName is missing (Katib rejects it)")
        overrides: dict[str, Strategy] = {}
        for name, value in self.explicit_strategies if explicit_only else self.strategies:
            try:
                overrides.setdefault(name, Strategy(value))
            except ValueError:
                raise ExperimentError(f"{self.where}: spec.objective.metricStrategies: {name}={value!r} "
                                      "must be min, max or latest") from None
        return overrides

    def sidecar_args(self) -> list[str]:
        """The metric arguments the webhook gives a StdOut/File/TensorFlowEvent sidecar (reference §4.4)."""
        args = ["-m", ";".join(self.metric_names), "-o-type", self.objective_type]
        path, _ = self.collector.mount()
        if path:
            args += ["-path", path]
        if self.collector.filters:
            args += ["-f", ";".join(self.collector.filters)]
        if self.collector.kind == "File" and self.collector.has_file_system_path:
            args += ["-format", self.collector.file_format]
        elif self.collector.kind == "StdOut":
            args += ["-format", "TEXT"]
        return args


def _map(value: object, where: str, file: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ExperimentError(f"{file}: {where} must be a mapping, not {type(value).__name__}")
    return value


def _list(value: object, where: str, file: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExperimentError(f"{file}: {where} must be a list, not {type(value).__name__}")
    return value


def _names(value: object, where: str, file: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ExperimentError(f"{file}: {where} must be a list of names")
    return tuple(str(item) for item in value)


def _given_strategies(objective: Mapping[str, Any], file: str) -> tuple[tuple[str, str], ...]:
    given = []
    for index, item in enumerate(_list(objective.get("metricStrategies"), "spec.objective.metricStrategies", file)):
        item = _map(item, f"spec.objective.metricStrategies[{index}]", file)
        given.append((str(item.get("name") or ""), str(item.get("value") or "")))
    return tuple(given)


def _default_strategies(objective: Mapping[str, Any], file: str) -> tuple[tuple[str, str], ...]:
    """Katib's `setDefaultObjective`: given entries kept; objective and additional metrics get the type's."""
    given = _given_strategies(objective, file)
    by_type = {"minimize": "min", "maximize": "max"}.get(str(objective.get("type") or ""), "latest")
    objective_name = str(objective.get("objectiveMetricName") or "")
    named = {name for name, _ in given}
    out = list(given)
    if objective_name not in named:
        out.append((objective_name, by_type))
    for name in _names(objective.get("additionalMetricNames"), "spec.objective.additionalMetricNames", file):
        if name not in named and name != objective_name:
            out.append((name, by_type))
    return tuple(out)


def _collector(value: object, where: str, file: str) -> Collector:
    """Katib's `setDefaultMetricsCollector`: a missing spec or collector means StdOut; per-kind source defaults."""
    spec = _map(value, where, file)
    collector = spec.get("collector")
    kind = "StdOut" if collector is None else str(_map(collector, f"{where}.collector", file).get("kind") or "")
    source = _map(spec.get("source"), f"{where}.source", file)
    fs_given = source.get("fileSystemPath") is not None
    fs = _map(source.get("fileSystemPath"), f"{where}.source.fileSystemPath", file)
    path, path_kind, fmt = str(fs.get("path") or ""), str(fs.get("kind") or ""), str(fs.get("format") or "")
    if kind == "File":
        fs_given, path_kind = True, path_kind or "File"
        path, fmt = path or DEFAULT_METRICS_FILE, fmt or "TEXT"
    elif kind == "TensorFlowEvent":
        fs_given, path_kind, path = True, path_kind or "Directory", path or DEFAULT_TFEVENT_DIR
    flt = source.get("filter")
    filters = _names(_map(flt, f"{where}.source.filter", file).get("metricsFormat"),
                     f"{where}.source.filter.metricsFormat", file)
    http = _map(source.get("httpGet"), f"{where}.source.httpGet", file)
    port, http_path = str(http.get("port") if http.get("port") is not None else ""), str(http.get("path") or "")
    if kind == "PrometheusMetric":
        http_path = http_path or DEFAULT_PROMETHEUS_PATH
        port = DEFAULT_PROMETHEUS_PORT if port in ("", "0") else port
    custom = collector is not None and _map(collector, f"{where}.collector", file).get("customCollector") is not None
    return Collector(kind, where, path, path_kind, fmt, fs_given, filters, flt is not None, port, http_path, custom)


def _template(spec: Mapping[str, Any], file: str) -> TrialTemplate | None:
    template = spec.get("trialTemplate")
    if template is None:
        return None
    template = _map(template, "spec.trialTemplate", file)
    params = []
    for index, item in enumerate(_list(template.get("trialParameters"), "spec.trialTemplate.trialParameters", file)):
        item = _map(item, f"spec.trialTemplate.trialParameters[{index}]", file)
        params.append((str(item.get("name") or ""), str(item.get("reference") or "")))
    search = tuple(str(_map(p, "spec.parameters[]", file).get("name") or "")
                   for p in _list(spec.get("parameters"), "spec.parameters", file))
    config_map = _map(template.get("configMap"), "spec.trialTemplate.configMap", file)
    trial_spec = template.get("trialSpec")
    labels = template.get("primaryPodLabels")
    return TrialTemplate(
        primary_container=str(template.get("primaryContainerName") or ""),
        trial_spec=_map(trial_spec, "spec.trialTemplate.trialSpec", file) if trial_spec is not None else None,
        field="spec.trialTemplate.trialSpec",
        parameters=tuple(params),
        search_space=search,
        config_map=str(config_map.get("configMapName") or "") if config_map else "",
        primary_pod_labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else None,
    )


def _trial_template(spec: Mapping[str, Any], file: str) -> TrialTemplate:
    run_spec = spec.get("runSpec")
    labels = spec.get("primaryPodLabels")
    return TrialTemplate(
        primary_container=str(spec.get("primaryContainerName") or ""),
        trial_spec=_map(run_spec, "spec.runSpec", file) if run_spec is not None else None,
        field="spec.runSpec",
        primary_pod_labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else None,
    )


def experiment_from_object(obj: Mapping[str, Any], where: str = "<experiment>") -> Experiment:
    """Decode one Experiment or Trial object (a dict as YAML/JSON gives it) with Katib's defaulting."""
    kind = str(obj.get("kind") or "Experiment")
    meta = _map(obj.get("metadata"), "metadata", where)
    spec = _map(obj.get("spec"), "spec", where)
    objective = _map(spec.get("objective"), "spec.objective", where)
    trial = kind == "Trial"
    collector_field = "spec.metricsCollector" if trial else "spec.metricsCollectorSpec"
    return Experiment(
        where=where,
        kind=kind,
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
        objective_metric=str(objective.get("objectiveMetricName") or ""),
        additional_metrics=_names(objective.get("additionalMetricNames"), "spec.objective.additionalMetricNames",
                                  where),
        objective_type=str(objective.get("type") or ""),
        strategies=_default_strategies(objective, where) if objective else (),
        collector=_collector(spec.get(collector_field.removeprefix("spec.")), collector_field, where),
        template=_trial_template(spec, where) if trial else _template(spec, where),
        explicit_strategies=_given_strategies(objective, where),
        raw=obj,
    )
