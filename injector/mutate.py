"""Given a pod, its Trial, katib-config and what was looked up, the pod to admit (pure; Katib's `Mutate`).

Katib's order and names are kept (labels, `KATIB_TRIAL_NAME`, primary-pod filter, sidecar, suggestion volume,
`shareProcessNamespace`, `metrics-volume`, command wrap). Deliberate differences: a non-primary pod without the
primary container keeps its labels instead of being rejected, a pod that already carries the collector is left
alone, the command wrapper of `injector.wrap`, a restrictive sidecar securityContext, and native sidecars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from katib_metrics.injector.config import KatibConfig
from katib_metrics.injector.errors import DeniedError, EntrypointError
from katib_metrics.injector.sidecar import COLLECTOR_NAMES, SCRATCH_VOLUME, SidecarOptions, build_sidecar
from katib_metrics.injector.trial import TRIAL_LABEL, Algorithm, CollectorKind, Trial
from katib_metrics.injector.wrap import WrapSpec, escape_for_kubelet, wrap_command

__all__ = ["ImageConfig", "Mutation", "Resolved", "entrypoint_container", "go_clean", "go_dir", "mutate_pod"]

METRICS_VOLUME = "metrics-volume"
SUGGESTION_VOLUME = "suggestion-volume"
SUGGESTION_TRIAL_DIR = "suggestion_trial_dir"
TRIAL_ENV = "KATIB_TRIAL_NAME"
WRAPPED_KINDS = (CollectorKind.STDOUT, CollectorKind.FILE, CollectorKind.TFEVENT)


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The `Entrypoint` and `Cmd` of an image, as its registry reports them."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the mutation needs from outside the pod: read by the server, or given to `injector mutate`."""

    algorithm: Algorithm | None = None
    image_config: ImageConfig | None = None


@dataclass(frozen=True, slots=True)
class Mutation:
    pod: dict[str, Any]
    changed: bool
    summary: str


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON-shaped tree (dicts, lists, immutable scalars): several times faster than deepcopy."""
    if isinstance(value, Mapping):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_copy(item) for item in value]
    return value


def go_clean(path: str) -> str:
    """Go's `filepath.Clean` for slash paths."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    joined = "/".join(parts)
    return ("/" + joined) if rooted else (joined or ".")


def go_dir(path: str) -> str:
    """Go's `filepath.Dir`."""
    return go_clean(path[: path.rfind("/") + 1])


def _labels(pod: dict[str, Any], trial: Trial) -> None:
    meta = pod.setdefault("metadata", {})
    labels = dict(meta.get("labels") or {})
    labels.update(trial.labels)
    labels[TRIAL_LABEL] = trial.name
    meta["labels"] = labels


def _find(containers: Sequence[Mapping[str, Any]], name: str) -> int | None:
    return next((i for i, c in enumerate(containers) if c.get("name") == name), None)


def _add_env(container: dict[str, Any]) -> None:
    """`KATIB_TRIAL_NAME` from the trial label. Katib appends it, and of two same-named variables the last wins:
    a value the template set is replaced in place (same effect, no duplicate, idempotent on re-admission)."""
    ours = {"name": TRIAL_ENV, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{TRIAL_LABEL}']"}}}
    env = list(container.get("env") or [])
    named = [i for i, item in enumerate(env) if isinstance(item, Mapping) and item.get("name") == TRIAL_ENV]
    if not named:
        env.append(ours)
    else:
        env[named[0]] = ours
        env = [item for i, item in enumerate(env) if i not in named[1:]]
    container["env"] = env


def _is_primary_pod(pod: Mapping[str, Any], trial: Trial) -> bool:
    if trial.primary_pod_labels is None:
        return True
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in trial.primary_pod_labels.items())


def _already_injected(spec: Mapping[str, Any], trial: Trial) -> bool:
    names = {c.get("name") for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]}
    custom = (trial.custom_collector or {}).get("name") if trial.kind is CollectorKind.CUSTOM else None
    wanted = {custom} if custom else set(COLLECTOR_NAMES)
    return bool(names & wanted)


def _add_volume(spec: dict[str, Any], volume: dict[str, Any]) -> None:
    volumes = list(spec.get("volumes") or [])
    volumes.append(volume)
    spec["volumes"] = volumes


def _add_mount(container: dict[str, Any], mount: dict[str, Any]) -> None:
    mounts = list(container.get("volumeMounts") or [])
    mounts.append(mount)
    container["volumeMounts"] = mounts


def _suggestion_volume(spec: dict[str, Any], primary: dict[str, Any], trial: Trial,
                       algorithm: Algorithm | None) -> None:
    trial_dir = (algorithm.settings.get(SUGGESTION_TRIAL_DIR, "") if algorithm else "")
    if not trial_dir or algorithm is None:
        return
    claim = f"{algorithm.suggestion_name}-{algorithm.name}"
    _add_volume(spec, {"name": SUGGESTION_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    _add_mount(primary, {"name": SUGGESTION_VOLUME, "mountPath": trial_dir,
                         "subPath": f"{trial.experiment}/{trial.name}"})


def _metrics_volume(spec: dict[str, Any], primary: dict[str, Any], sidecar: dict[str, Any], trial: Trial) -> str:
    """Adds `metrics-volume`; returns the marker directory ("" when there is no volume)."""
    path, kind = trial.mount()
    if not path:
        return ""
    mount_path = go_dir(path) if kind == "File" else path
    _add_volume(spec, {"name": METRICS_VOLUME, "emptyDir": {}})
    for container in (sidecar, primary):
        _add_mount(container, {"name": METRICS_VOLUME, "mountPath": mount_path})
    return go_dir(path) if kind == "File" else go_clean(path)


def _training_argv(container: Mapping[str, Any], image: ImageConfig | None, pod_name: str) -> list[str]:
    command = container.get("command")
    args = container.get("args")
    if command:
        return [str(a) for a in [*command, *(args or [])]]
    if image is None:
        raise EntrypointError(
            f"container {container.get('name')!r} of pod {pod_name} has no `command` and the entrypoint of "
            f"image {container.get('image')!r} could not be read from its registry: set `command` (and `args`) "
            "for the training container in the trial template")
    # Image config is not subject to kubelet's $(VAR) expansion; once in the pod spec it would be.
    tail = [str(a) for a in args] if args else [escape_for_kubelet(a) for a in image.cmd]
    argv = [escape_for_kubelet(a) for a in image.entrypoint] + tail
    if not argv:
        raise EntrypointError(f"image {container.get('image')!r} has neither Entrypoint nor Cmd and container "
                              f"{container.get('name')!r} has no `command`: set `command` in the trial template")
    return argv


def _wrap(primary: dict[str, Any], trial: Trial, marker_dir: str, image: ImageConfig | None,
          pod_name: str) -> None:
    path, _ = trial.mount()
    spec = WrapSpec(marker_dir=marker_dir,
                    metrics_file=path if trial.kind is CollectorKind.STDOUT else None,
                    early_stopping=trial.stop_rules is not None)
    command, args = wrap_command(_training_argv(primary, image, pod_name), spec)
    primary["command"] = command
    primary["args"] = args


def _pod_name(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or "<unnamed>")


def _attach(spec: dict[str, Any], primary_index: int, trial: Trial, config: KatibConfig,
            options: SidecarOptions, resolved: Resolved, namespace: str, pod_name: str) -> None:
    containers = spec["containers"]
    primary = containers[primary_index]
    sidecar = build_sidecar(trial, config, options, resolved.algorithm, spec, primary, namespace)
    if trial.kind is not CollectorKind.CUSTOM and options.restricted_security and not config.inject_security_context:
        # readOnlyRootFilesystem: the sidecar's only writable places are the metrics volume and this.
        _add_volume(spec, {"name": SCRATCH_VOLUME, "emptyDir": {}})
        _add_mount(sidecar, {"name": SCRATCH_VOLUME, "mountPath": "/tmp"})
    _suggestion_volume(spec, primary, trial, resolved.algorithm)
    spec["shareProcessNamespace"] = True
    marker_dir = _metrics_volume(spec, primary, sidecar, trial)
    if trial.kind in WRAPPED_KINDS:
        _wrap(primary, trial, marker_dir, resolved.image_config, pod_name)
    if options.native_sidecar and trial.kind is not CollectorKind.CUSTOM:
        spec["initContainers"] = [*(spec.get("initContainers") or []), sidecar]
    else:
        containers.append(sidecar)


def entrypoint_container(pod: Mapping[str, Any], trial: Trial) -> Mapping[str, Any] | None:
    """The container whose image entrypoint `mutate_pod` will need (a wrapped primary without `command`)."""
    spec = pod.get("spec") or {}
    if trial.kind not in WRAPPED_KINDS or not _is_primary_pod(pod, trial) or _already_injected(spec, trial):
        return None
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    index = _find(containers, trial.primary_container)
    if index is None or containers[index].get("command"):
        return None
    return containers[index]


def mutate_pod(pod: Mapping[str, Any], trial: Trial, config: KatibConfig, options: SidecarOptions,
               resolved: Resolved, namespace: str = "") -> Mutation:
    """The pod to admit. Raises DeniedError (with a message for the user) when it must be refused."""
    result: dict[str, Any] = json_copy(pod)
    spec = result.setdefault("spec", {})
    name = _pod_name(result)
    namespace = namespace or trial.namespace or str((result.get("metadata") or {}).get("namespace") or "")
    if trial.kind is not CollectorKind.PUSH and _already_injected(spec, trial):  # Push injects no container
        return Mutation(json_copy(pod), False, f"pod {name} already has the metrics collector")
    _labels(result, trial)
    containers = spec.setdefault("containers", [])
    index = _find(containers, trial.primary_container)
    primary_pod = _is_primary_pod(result, trial)
    if index is None:
        if primary_pod:
            names = [c.get("name") for c in containers]
            raise DeniedError(f"Unable to find primary container {trial.primary_container} in mutated pod "
                              f"containers {names}: set the Trial's primaryContainerName to the training container")
        return Mutation(result, True, f"pod {name}: labels only (not a primary pod, no primary container)")
    _add_env(containers[index])
    if not primary_pod:
        return Mutation(result, True, f"pod {name}: labels and env (not a primary pod)")
    if trial.kind is CollectorKind.PUSH:
        return Mutation(result, True, f"pod {name}: labels and env (kind Push)")
    _attach(spec, index, trial, config, options, resolved, namespace, name)
    return Mutation(result, True, f"pod {name}: {trial.kind} collector injected for trial {trial.name}")
