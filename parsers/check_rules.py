"""What Katib's experiment validating webhook rejects, for the objective, the collector and the template (pure).

Rules of `validateObjective`, `validateMetricsCollector` and `validateTrialTemplate` (run after the
defaulter, as in the cluster), each as a `Finding` with the field path Katib names. Checks that need the
cluster (katib-config entries, suggestion configs) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from katib_metrics.parsers.errors import FilterError
from katib_metrics.parsers.experiment import KINDS, Collector, Experiment
from katib_metrics.parsers.filters import translate_re2

__all__ = ["Finding", "katib_errors"]

_TWO_PARENS = re.compile(r".*\(.*\).*\(.*\).*", re.S)
_PLACEHOLDER = re.compile(r"\$\{trialParameters\.[^}]+\}")  # Katib's TrialTemplateParamReplaceFormatRegex
_META = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[.+\])\}$")
# Kinds the defaulter gives success and failure conditions (so they need not be written).
_DEFAULTED_KINDS = {"Job", "TrainJob", "TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "PaddleJob", "JAXJob", "MXJob"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: `error` (Katib rejects the Experiment) or `warning` (accepted, but a known pitfall)."""

    severity: str
    field: str
    message: str
    code: str = "katib_validation"
    blocks_objective: bool = False  # collection could never yield the objective

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "field": self.field, "message": self.message, "code": self.code}

    def line(self) -> str:
        code = "" if self.code == "katib_validation" else f" [{self.code}]"
        return f"{self.severity}: {self.field}: {self.message}{code}"


def _error(field: str, message: str) -> Finding:
    return Finding("error", field, message)


def _objective(exp: Experiment) -> Iterator[Finding]:
    spec = exp.raw.get("spec") if isinstance(exp.raw.get("spec"), Mapping) else {}
    if not isinstance(spec, Mapping) or spec.get("objective") is None:
        yield _error("spec.objective", "must be specified")
        return
    if exp.objective_type not in ("minimize", "maximize"):
        yield _error("spec.objective.type", f"must be minimize or maximize, not {exp.objective_type!r}")
    if not exp.objective_metric:
        yield _error("spec.objective.objectiveMetricName", "must be specified")
    elif exp.objective_metric in exp.additional_metrics:
        yield _error("spec.objective.additionalMetricNames",
                     f"should not contain spec.objective.objectiveMetricName ({exp.objective_metric})")


def _file_source(c: Collector) -> Iterator[Finding]:
    where = f"{c.source_field}.fileSystemPath"
    if c.kind == "File":
        if c.path_kind != "File" or not c.path.startswith("/"):
            yield _error(f"{where}.path", f"an absolute file path with kind File is required (got {c.path!r}, "
                                          f"kind {c.path_kind!r})")
        if c.file_format not in ("TEXT", "JSON"):
            yield _error(f"{where}.format", f"must be TEXT or JSON, not {c.file_format!r}")
        if c.file_format == "JSON" and c.has_filter:
            yield _error(f"{c.source_field}.filter", "must be nil when the metrics file format is JSON")
    elif c.kind == "TensorFlowEvent":
        if c.path_kind != "Directory" or not c.path.startswith("/"):
            yield _error(where + ".path", f"an absolute directory path with kind Directory is required "
                                          f"(got {c.path!r}, kind {c.path_kind!r})")
        if c.file_format:
            yield _error(f"{where}.format", f"must be empty for TensorFlowEvent, not {c.file_format!r}")


def _collector(c: Collector) -> Iterator[Finding]:
    if c.kind in ("File", "TensorFlowEvent"):
        yield from _file_source(c)
    elif c.kind == "PrometheusMetric":
        if not c.http_port.isdigit() or int(c.http_port) <= 0:
            yield _error(f"{c.source_field}.httpGet.port", f"must be a positive integer, not {c.http_port!r}")
        if not c.http_path.startswith("/"):
            yield _error(f"{c.source_field}.httpGet.path", f"must start with /, not {c.http_path!r}")
    elif c.kind == "Custom":
        if not c.has_custom_collector:
            yield _error(f"{c.field}.collector.customCollector", "is required for kind Custom")
        if c.has_file_system_path and (not c.path.startswith("/") or c.path_kind not in ("File", "Directory")):
            yield _error(f"{c.source_field}.fileSystemPath", "needs an absolute path and kind File or Directory")
    elif c.kind not in KINDS:
        yield _error(f"{c.field}.collector.kind", f"invalid metrics collector kind {c.kind!r} "
                                                  f"(known: {', '.join(KINDS)})")
    yield from _filters(c)


def _filters(c: Collector) -> Iterator[Finding]:
    """Each metricsFormat must compile (RE2) and have Katib's "two top subexpressions"."""
    import regex

    for index, pattern in enumerate(c.filters):
        where = f"{c.source_field}.filter.metricsFormat[{index}]"
        try:
            regex.compile(translate_re2(pattern), regex.ASCII | regex.VERSION0)
        except FilterError as err:
            yield _error(where, f"invalid filter {pattern!r}: {err.problem}")
            continue
        except regex.error as err:
            yield _error(where, f"invalid filter {pattern!r}: {err}")
            continue
        if not _TWO_PARENS.fullmatch(pattern):
            yield _error(where, f"{pattern!r}: two top subexpressions are required (name, then value)")


def _parameters(exp: Experiment, text: str) -> Iterator[Finding]:
    template = exp.template
    assert template is not None
    names: set[str] = set()
    refs: set[str] = set()
    for index, (name, ref) in enumerate(template.parameters):
        where = f"spec.trialTemplate.trialParameters[{index}]"
        if not name or not ref or "{" in name or "}" in name:
            yield _error(where, "name and reference must be specified and name must not contain '{' or '}'")
            continue
        if name in names or ref in refs:
            yield _error(where, f"parameter {'name ' + name if name in names else 'reference ' + ref} is duplicated")
            continue
        names.add(name)
        refs.add(ref)
        if template.search_space and not _META.match(ref) and ref not in template.search_space:
            yield _error(f"{where}.reference", f"{ref!r} does not exist in spec.parameters "
                                               f"({', '.join(template.search_space)})")
        placeholder = "${trialParameters." + name + "}"
        if placeholder not in text:
            yield _error(f"{where}.name", f"{name!r} is not used in the trial template ({placeholder} not found)")
        text = text.replace(placeholder, "test-value")
    unknown = sorted(set(_PLACEHOLDER.findall(text)))
    if unknown:
        yield _error("spec.trialTemplate", f"{', '.join(unknown)} in the template are not in trialParameters")


def _template(exp: Experiment) -> Iterator[Finding]:
    import json

    spec = exp.raw.get("spec")
    raw = spec.get("trialTemplate") if isinstance(spec, Mapping) else None
    template = exp.template
    if template is None or not isinstance(raw, Mapping):
        yield _error("spec.trialTemplate", "must be specified")
        return
    if not template.primary_container:
        yield _error("spec.trialTemplate.primaryContainerName", "must be specified")
    kind = str((template.trial_spec or {}).get("kind") or "")
    if kind not in _DEFAULTED_KINDS and not (raw.get("successCondition") and raw.get("failureCondition")):
        yield _error("spec.trialTemplate", f"successCondition and failureCondition must be specified for kind "
                                           f"{kind or '(none)'}")
    if raw.get("trialParameters") is None:
        yield _error("spec.trialTemplate.trialParameters", "must be specified")
        return
    if template.trial_spec is None and not template.config_map:
        yield _error("spec.trialTemplate", "trialSpec or configMap must be specified")
        return
    if template.trial_spec is not None:
        meta = template.trial_spec.get("metadata")
        if isinstance(meta, Mapping) and (meta.get("name") or meta.get("namespace")):
            yield _error("spec.trialTemplate.trialSpec.metadata", "name and namespace must be omitted")
        yield from _parameters(exp, json.dumps(template.trial_spec))


def katib_errors(exp: Experiment) -> list[Finding]:
    """Everything Katib's validating webhook would reject (for a Trial: the objective and collector)."""
    found = [*_objective(exp), *_collector(exp.collector)]
    if exp.kind == "Experiment":
        found += _template(exp)
    return found
