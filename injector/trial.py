"""The parts of a Katib Trial (and Experiment/Suggestion) the mutation reads, decoded once into frozen values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from katib_metrics.injector.errors import InvalidObjectError

__all__ = [
    "DEFAULT_METRICS_FILE",
    "DEFAULT_TFEVENT_DIR",
    "EXPERIMENT_LABEL",
    "TRIAL_LABEL",
    "Algorithm",
    "CollectorKind",
    "StopRule",
    "Trial",
    "algorithm_from_object",
]

TRIAL_LABEL = "katib.kubeflow.org/trial"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
DEFAULT_METRICS_FILE = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = 8080


class CollectorKind(enum.StrEnum):
    STDOUT = "StdOut"
    FILE = "File"
    TFEVENT = "TensorFlowEvent"
    PROMETHEUS = "PrometheusMetric"
    CUSTOM = "Custom"
    PUSH = "Push"


@dataclass(frozen=True, slots=True)
class StopRule:
    name: str
    value: str
    comparison: str
    start_step: int = 0

    def to_arg(self) -> str:
        """Katib's `-stop-rule` value: `name;value;comparison;startStep`."""
        return f"{self.name};{self.value};{self.comparison};{self.start_step}"


@dataclass(frozen=True, slots=True)
class Algorithm:
    """What the Suggestion (else the Experiment) says about the search algorithm."""

    suggestion_name: str
    name: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Trial:
    name: str
    namespace: str
    labels: Mapping[str, str]
    objective_type: str
    metric_names: tuple[str, ...]
    kind: CollectorKind
    primary_container: str
    primary_pod_labels: Mapping[str, str] | None = None
    stop_rules: tuple[StopRule, ...] | None = None
    path: str = ""
    path_kind: str = ""
    file_format: str | None = None
    filters: tuple[str, ...] = ()
    http_get: Mapping[str, Any] | None = None
    custom_collector: Mapping[str, Any] | None = None

    @property
    def experiment(self) -> str:
        return self.labels.get(EXPERIMENT_LABEL, "")

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Trial:
        return _decode_trial(obj)

    def mount(self) -> tuple[str, str]:
        """Katib's `getMountPath`: (path, "File" | "Directory") or ("", "Invalid")."""
        if self.kind is CollectorKind.STDOUT:
            return DEFAULT_METRICS_FILE, "File"
        if self.kind is CollectorKind.FILE and self.path:
            return self.path, "File"
        if self.kind is CollectorKind.TFEVENT and self.path:
            return self.path, "Directory"
        if self.kind is CollectorKind.CUSTOM and self.path:
            return self.path, self.path_kind or "Invalid"
        return "", "Invalid"


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidObjectError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _str_map(value: object, where: str) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in _mapping(value, where).items()}


def _stop_rules(value: object, trial: str) -> tuple[StopRule, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidObjectError(f"Trial {trial}: spec.earlyStoppingRules must be a list")
    rules = []
    for index, rule in enumerate(value):
        rule = _mapping(rule, f"Trial {trial}: spec.earlyStoppingRules[{index}]")
        try:
            start = int(rule.get("startStep") or 0)
        except (TypeError, ValueError) as err:
            raise InvalidObjectError(
                f"Trial {trial}: earlyStoppingRules[{index}].startStep must be an integer") from err
        rules.append(StopRule(str(rule.get("name", "")), str(rule.get("value", "")),
                              str(rule.get("comparison", "")), start))
    return tuple(rules)


def _collector_kind(text: str, trial: str) -> CollectorKind:
    try:
        return CollectorKind(text or CollectorKind.STDOUT)
    except ValueError:
        known = ", ".join(kind.value for kind in CollectorKind)
        raise InvalidObjectError(f"Trial {trial}: unknown metrics collector kind {text!r} (known: {known})") from None


def _decode_trial(obj: Mapping[str, Any]) -> Trial:
    if obj.get("kind") not in (None, "Trial"):
        raise InvalidObjectError(f"expected a Trial, got kind {obj.get('kind')!r}")
    meta = _mapping(obj.get("metadata"), "Trial metadata")
    name = str(meta.get("name") or "")
    if not name:
        raise InvalidObjectError("Trial has no metadata.name")
    spec = _mapping(obj.get("spec"), f"Trial {name}: spec")
    objective = _mapping(spec.get("objective"), f"Trial {name}: spec.objective")
    collector_spec = _mapping(spec.get("metricsCollector"), f"Trial {name}: spec.metricsCollector")
    collector = _mapping(collector_spec.get("collector"), f"Trial {name}: metricsCollector.collector")
    source = _mapping(collector_spec.get("source"), f"Trial {name}: metricsCollector.source")
    fs_path = _mapping(source.get("fileSystemPath"), f"Trial {name}: source.fileSystemPath")
    filters = _mapping(source.get("filter"), f"Trial {name}: source.filter").get("metricsFormat") or []
    kind = _collector_kind(str(collector.get("kind") or ""), name)
    objective_name = str(objective.get("objectiveMetricName") or "")
    additional = [str(m) for m in objective.get("additionalMetricNames") or []]
    primary_pod_labels = spec.get("primaryPodLabels")
    return Trial(
        name=name,
        namespace=str(meta.get("namespace") or ""),
        labels=_str_map(meta.get("labels"), f"Trial {name}: metadata.labels"),
        objective_type=str(objective.get("type") or ""),
        metric_names=tuple([objective_name, *additional]),
        kind=kind,
        primary_container=str(spec.get("primaryContainerName") or ""),
        primary_pod_labels=None if primary_pod_labels is None
        else _str_map(primary_pod_labels, f"Trial {name}: spec.primaryPodLabels"),
        stop_rules=_stop_rules(spec.get("earlyStoppingRules"), name),
        path=str(fs_path.get("path") or ""),
        path_kind=str(fs_path.get("kind") or ""),
        file_format=None if "fileSystemPath" not in source or source.get("fileSystemPath") is None
        else str(fs_path.get("format") or ""),
        filters=tuple(str(f) for f in filters),
        http_get=_mapping(source.get("httpGet"), f"Trial {name}: source.httpGet") or None,
        custom_collector=_mapping(collector.get("customCollector"), f"Trial {name}: customCollector") or None,
    )


def algorithm_from_object(obj: Mapping[str, Any]) -> Algorithm:
    """The algorithm of a Suggestion or an Experiment (both keep it in `spec.algorithm`)."""
    meta = _mapping(obj.get("metadata"), "metadata")
    kind = str(obj.get("kind") or "object")
    name = str(meta.get("name") or "")
    algorithm = _mapping(_mapping(obj.get("spec"), f"{kind} {name}: spec").get("algorithm"),
                         f"{kind} {name}: spec.algorithm")
    settings = {
        str(item.get("name", "")): str(item.get("value", ""))
        for item in algorithm.get("algorithmSettings") or []
        if isinstance(item, Mapping)
    }
    return Algorithm(suggestion_name=name, name=str(algorithm.get("algorithmName") or ""), settings=settings)
