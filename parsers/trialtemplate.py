"""The primary container of a trial template, with `${trialParameters.NAME}` substituted (pure).

Finds the container named `primaryContainerName` in the trial kinds Katib runs (Job, TFJob, PyTorchJob,
XGBoostJob, MPIJob, MXJob, PaddleJob, JAXJob: the replica the primary pod labels select, else Master,
Chief, Launcher, then the others; TrainJob: `spec.trainer`; anything else: the first container-like
mapping of that name). Values come from `--param NAME=VALUE` by trial parameter name or by the
search-space parameter it references; `${trialSpec.Name}` and the other metadata references are the
local trial's. Kubelet's `$(VAR)` expansion is applied to command and args, as the pod would see them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.experiment import Experiment, TrialTemplate

__all__ = [
    "PLACEHOLDER",
    "LocalCommand",
    "TemplateError",
    "as_list",
    "container_names",
    "find_primary_container",
    "local_command",
    "parameter_values",
    "substitute",
]

PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^{}]+)\}")
_META = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[(.+)\])\}$")
_KUBELET_VAR = re.compile(r"\$(\$|\(([A-Za-z_][-._A-Za-z0-9]*)\))")

REPLICA_FIELDS = {
    "TFJob": "tfReplicaSpecs",
    "PyTorchJob": "pytorchReplicaSpecs",
    "XGBoostJob": "xgbReplicaSpecs",
    "MPIJob": "mpiReplicaSpecs",
    "MXJob": "mxReplicaSpecs",
    "PaddleJob": "paddleReplicaSpecs",
    "JAXJob": "jaxReplicaSpecs",
}
_ROLE_ORDER = ("master", "chief", "launcher", "scheduler", "worker")
_ROLE_LABEL = "training.kubeflow.org/job-role"


class TemplateError(SpecError):
    """The template has no command to run here, or parameters have no value."""


@dataclass(frozen=True, slots=True)
class LocalCommand:
    """What the primary container would run: argv, its literal `env`, and where it was found."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    where: str


def as_list(value: object) -> list[Any]:
    """A list field, or [] when it is missing or malformed (the API server would reject that object anyway)."""
    return value if isinstance(value, list) else []


def _pod_containers(pod_spec: object, where: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    if not isinstance(pod_spec, Mapping):
        return
    for key in ("containers", "initContainers"):
        for index, container in enumerate(as_list(pod_spec.get(key))):
            if isinstance(container, Mapping):
                yield container, f"{where}.{key}[{index}]"


def _replica_order(replicas: Mapping[str, Any], labels: Mapping[str, str] | None) -> list[str]:
    wanted = (labels or {}).get(_ROLE_LABEL, "").lower()
    rank = {role: i for i, role in enumerate(_ROLE_ORDER)}

    def key(name: str) -> tuple[int, int]:
        return (0 if wanted and name.lower() == wanted else 1, rank.get(name.lower(), len(rank)))

    return sorted(replicas, key=key)


def _candidates(trial_spec: Mapping[str, Any], field: str, labels: Mapping[str, str] | None
                ) -> Iterator[tuple[Mapping[str, Any], str]]:
    """Container-like mappings in the order the primary one is looked for."""
    kind, spec = str(trial_spec.get("kind") or ""), trial_spec.get("spec")
    if not isinstance(spec, Mapping):
        return
    if kind == "Job":
        template = spec.get("template")
        if isinstance(template, Mapping):
            yield from _pod_containers(template.get("spec"), f"{field}.spec.template.spec")
    elif kind in REPLICA_FIELDS:
        replicas = spec.get(REPLICA_FIELDS[kind])
        if isinstance(replicas, Mapping):
            for role in _replica_order(replicas, labels):
                replica = replicas[role]
                template = replica.get("template") if isinstance(replica, Mapping) else None
                if isinstance(template, Mapping):
                    yield from _pod_containers(template.get("spec"),
                                               f"{field}.spec.{REPLICA_FIELDS[kind]}.{role}.template.spec")
    elif kind == "TrainJob" and isinstance(spec.get("trainer"), Mapping):
        yield {"name": "", **spec["trainer"]}, f"{field}.spec.trainer"
    yield from _walk(spec, f"{field}.spec")


def _walk(node: object, where: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    """Any mapping with a `name` and a `command`, `args` or `image`: Argo steps, Tekton steps, other CRDs."""
    if isinstance(node, Mapping):
        if isinstance(node.get("name"), str) and any(k in node for k in ("command", "args", "image")):
            yield node, where
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}[{index}]")


def find_primary_container(template: TrialTemplate) -> tuple[Mapping[str, Any], str] | None:
    """The primary container and its field path; TrainJob's trainer is the primary container (`node`)."""
    if template.trial_spec is None:
        return None
    for container, where in _candidates(template.trial_spec, template.field, template.primary_pod_labels):
        if container.get("name") == template.primary_container or where.endswith(".spec.trainer"):
            return container, where
    return None


def container_names(template: TrialTemplate) -> list[str]:
    """The names of every container in the template (for "not found" messages)."""
    if template.trial_spec is None:
        return []
    names = [str(c.get("name")) for c, w in _candidates(template.trial_spec, template.field, None)
             if c.get("name") and not w.endswith(".spec.trainer")]
    return list(dict.fromkeys(names))


def parameter_values(experiment: Experiment, given: Mapping[str, str], trial_name: str) -> dict[str, str]:
    """trialParameter name → value: from `given` (by name or referenced search-space name) or trial metadata.

    Raises TemplateError for a given name that is neither a trial parameter nor a search-space parameter.
    """
    template = experiment.template
    params = template.parameters if template is not None else ()
    known = {name for name, _ in params} | {ref for _, ref in params} | set(template.search_space if template else ())
    unknown = [name for name in given if name not in known]
    if unknown:
        names = ", ".join(sorted(n for n in known if n)) or "none"
        raise TemplateError(f"--param {', '.join(unknown)}: not a trial parameter or search-space parameter of "
                            f"{experiment.title} (known: {names})")
    values: dict[str, str] = {}
    for name, reference in params:
        if name in given:
            values[name] = given[name]
        elif reference in given:
            values[name] = given[reference]
        elif (meta := _metadata(reference, experiment, trial_name)) is not None:
            values[name] = meta
    return values


def _metadata(reference: str, experiment: Experiment, trial_name: str) -> str | None:
    match = _META.match(reference)
    if match is None:
        return None
    spec = experiment.template.trial_spec if experiment.template is not None else None
    spec = spec or {}
    key = match.group(1)
    if key == "Name":
        return trial_name
    if key == "Namespace":
        return experiment.namespace or "default"
    if key == "Kind":
        return str(spec.get("kind") or "")
    if key == "APIVersion":
        return str(spec.get("apiVersion") or "")
    meta = spec.get("metadata")
    table = meta.get(match.group(2).lower()) if isinstance(meta, Mapping) else None
    return str(table.get(match.group(3), "")) if isinstance(table, Mapping) else ""


def substitute(text: str, values: Mapping[str, str], missing: set[str]) -> str:
    """`${trialParameters.NAME}` replaced by its value; names without one are added to `missing`."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        missing.add(name)
        return match.group(0)

    return PLACEHOLDER.sub(one, text)


def expand_kubelet(text: str, env: Mapping[str, str]) -> str:
    """Kubelet's `$(VAR)` expansion of command and args: `$$` is `$`, unknown `$(X)` stays as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return env[name] if name in env else match.group(0)

    return _KUBELET_VAR.sub(one, text)


def _env(container: Mapping[str, Any], values: Mapping[str, str], missing: set[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in as_list(container.get("env")):
        if isinstance(item, Mapping) and item.get("name") and "valueFrom" not in item:
            raw = "" if item.get("value") is None else str(item.get("value"))
            env[str(item["name"])] = expand_kubelet(substitute(raw, values, missing), env)
    return env


def _missing_error(missing: set[str], experiment: Experiment) -> TemplateError:
    params = dict(experiment.template.parameters) if experiment.template is not None else {}
    shown = ", ".join(f"{name} ({params[name]})" if params.get(name) and params[name] != name else name
                      for name in sorted(missing))
    return TemplateError(f"no value for trial parameter(s) {shown}: give --param NAME=VALUE for each "
                         f"(by trial parameter or search-space name)")


def local_command(experiment: Experiment, given: Mapping[str, str], trial_name: str,
                  command: Sequence[str] = ()) -> LocalCommand:
    """The command to run: `command` when given, else the primary container's command and args; both
    substituted. TemplateError lists every parameter without a value, or says why there is no command."""
    values = parameter_values(experiment, given, trial_name)
    template = experiment.template
    found = find_primary_container(template) if template is not None else None
    missing: set[str] = set()
    container = found[0] if found is not None else {}
    env = _env(container, values, missing)
    if command:
        argv = [substitute(arg, values, missing) for arg in command]
    else:
        argv = _template_argv(experiment, found)
        argv = [expand_kubelet(substitute(arg, values, missing), env) for arg in argv]
    if missing:
        raise _missing_error(missing, experiment)
    return LocalCommand(tuple(argv), env, found[1] if found is not None else "")


def _template_argv(experiment: Experiment, found: tuple[Mapping[str, Any], str] | None) -> list[str]:
    template = experiment.template
    where = experiment.where
    if template is None:
        raise TemplateError(f"{where}: {experiment.title} has no trial template: give the command after --")
    if template.trial_spec is None:
        source = f"ConfigMap {template.config_map}" if template.config_map else "nowhere"
        raise TemplateError(f"{where}: {template.field} is missing (the template is in {source}): "
                            "give the command after --")
    if found is None:
        names = ", ".join(container_names(template)) or "none"
        raise TemplateError(f"{where}: primaryContainerName {template.primary_container!r} is not a container "
                            f"of {template.field} (containers: {names}): fix it or give the command after --")
    container, at = found
    command = [str(a) for a in as_list(container.get("command"))]
    if not command:
        raise TemplateError(f"{where}: {at} has no command (the image's entrypoint would run, which is not "
                            "known here): give the command after --")
    return command + [str(a) for a in as_list(container.get("args"))]
