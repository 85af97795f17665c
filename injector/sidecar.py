"""Builds the collector sidecar container for a trial pod (pure): name, image, Katib's args, resources, security."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from katib_metrics.injector.config import CollectorConfig, KatibConfig
from katib_metrics.injector.errors import DeniedError
from katib_metrics.injector.trial import (
    DEFAULT_PROMETHEUS_PATH,
    DEFAULT_PROMETHEUS_PORT,
    Algorithm,
    CollectorKind,
    Trial,
)

__all__ = [
    "COLLECTOR_NAMES",
    "EARLY_STOPPING_PORT",
    "SCRATCH_VOLUME",
    "SidecarOptions",
    "build_sidecar",
    "sidecar_args",
    "sidecar_name",
]

EARLY_STOPPING_PORT = 6788
LOGGER_COLLECTOR = "metrics-logger-and-collector"
COLLECTOR = "metrics-collector"
COLLECTOR_NAMES = (LOGGER_COLLECTOR, COLLECTOR)
SCRATCH_VOLUME = "katib-collector-scratch"
_USER_FIELDS = ("runAsUser", "runAsGroup", "runAsNonRoot")


@dataclass(frozen=True, slots=True)
class SidecarOptions:
    """The injector's own choices, beyond katib-config (its command-line options)."""

    db_manager_address: str = "katib-db-manager.kubeflow:6789"
    native_sidecar: bool = False
    metrics_port: int = 0  # > 0: the sidecar serves /metrics there (our image only; Katib's rejects the flag)
    restricted_security: bool = True  # False: no securityContext unless katib-config asks for Katib's copy


def sidecar_name(kind: CollectorKind) -> str:
    return LOGGER_COLLECTOR if kind in (CollectorKind.STDOUT, CollectorKind.FILE) else COLLECTOR


def _prometheus_url(http_get: Mapping[str, Any] | None) -> str:
    http_get = http_get or {}
    scheme = str(http_get.get("scheme") or "HTTP").lower()
    host = str(http_get.get("host") or "localhost")
    port = http_get.get("port") or DEFAULT_PROMETHEUS_PORT
    path = str(http_get.get("path") or DEFAULT_PROMETHEUS_PATH)
    return f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"


def _early_stop_args(trial: Trial, algorithm: Algorithm | None, namespace: str) -> list[str]:
    if not trial.stop_rules:
        return []
    if algorithm is None or not algorithm.name:
        raise DeniedError(
            f"Trial {trial.name} has early-stopping rules but the algorithm of Suggestion/Experiment "
            f"{trial.experiment!r} is unknown: the sidecar needs it for -s-earlystop")
    args: list[str] = []
    for rule in trial.stop_rules:
        args += ["-stop-rule", rule.to_arg()]
    address = f"{algorithm.suggestion_name}-{algorithm.name}.{namespace}:{EARLY_STOPPING_PORT}"
    return [*args, "-s-earlystop", address]


def sidecar_args(trial: Trial, collector: CollectorConfig, options: SidecarOptions,
                 algorithm: Algorithm | None, namespace: str) -> list[str]:
    """Katib's sidecar args in Katib's order (reference §4.4), plus our long options when enabled."""
    args = ["-t", trial.name, "-m", ";".join(trial.metric_names), "-o-type", trial.objective_type,
            "-s-db", options.db_manager_address]
    path, _ = trial.mount()
    if path:
        args += ["-path", path]
    if trial.filters:
        args += ["-f", ";".join(trial.filters)]
    if trial.kind is CollectorKind.FILE and trial.file_format is not None:
        args += ["-format", trial.file_format]
    elif trial.kind is CollectorKind.STDOUT:
        args += ["-format", "TEXT"]
    if collector.wait_all_processes is not None:
        args += ["-w", "true" if collector.wait_all_processes else "false"]
    args += _early_stop_args(trial, algorithm, namespace)
    if trial.kind is CollectorKind.PROMETHEUS:
        args += ["--prometheus-url", _prometheus_url(trial.http_get)]
    if options.metrics_port > 0:
        args += ["--metrics-port", str(options.metrics_port)]
    return args


def _restricted_context(primary: Mapping[str, Any], pod_spec: Mapping[str, Any],
                        early_stopping: bool) -> dict[str, Any]:
    """No privilege beyond what early stopping needs to signal the training (docs/early-stopping.md).

    The training's user, when the pod says it, needs no capability (same uid). When it does not, the
    training runs as its image's user, most often root and unknown here: with early-stopping rules the
    sidecar then runs as root with every capability dropped but CAP_KILL (signals across users).
    `runAsNonRoot: true` without a user is kept as asked (the collector then reports without stopping).
    """
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    container_ctx = primary.get("securityContext") or {}
    pod_ctx = pod_spec.get("securityContext") or {}
    for key in _USER_FIELDS:
        value = container_ctx.get(key, pod_ctx.get(key))
        if value is not None:
            context[key] = value
    if early_stopping and "runAsUser" not in context and context.get("runAsNonRoot") is not True:
        context.update(runAsUser=0, runAsNonRoot=False, capabilities={"drop": ["ALL"], "add": ["KILL"]})
    return context


def _security_context(config: KatibConfig, options: SidecarOptions, pod_spec: Mapping[str, Any],
                      primary: Mapping[str, Any], early_stopping: bool) -> dict[str, Any] | None:
    if config.inject_security_context:
        first = (pod_spec.get("containers") or [{}])[0]
        context = first.get("securityContext")
        return copy.deepcopy(dict(context)) if context else None
    if options.restricted_security:
        return _restricted_context(primary, pod_spec, early_stopping)
    return None


def build_sidecar(trial: Trial, config: KatibConfig, options: SidecarOptions, algorithm: Algorithm | None,
                  pod_spec: Mapping[str, Any], primary: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The container Katib would append (Custom: the user's own container, untouched)."""
    if trial.kind is CollectorKind.CUSTOM:
        if not trial.custom_collector:
            raise DeniedError(f"Trial {trial.name}: collector kind Custom needs metricsCollector.collector."
                              "customCollector (a container spec)")
        return copy.deepcopy(dict(trial.custom_collector))
    collector = config.collector(trial.kind)
    if collector is None:
        raise DeniedError(f"failed to find metrics collector config for kind: {trial.kind} in ConfigMap: "
                          "katib-config (add a runtime.metricsCollectors entry for it)")
    if not collector.image:
        raise DeniedError(f"required value for image configuration of metrics collector kind: {trial.kind} "
                          "(set runtime.metricsCollectors[].image in katib-config)")
    container: dict[str, Any] = {
        "name": sidecar_name(trial.kind),
        "image": collector.image,
        "args": sidecar_args(trial, collector, options, algorithm, namespace),
        "imagePullPolicy": collector.image_pull_policy,
        "resources": {k: dict(v) for k, v in collector.resources.items()},  # quantities are strings
    }
    context = _security_context(config, options, pod_spec, primary, bool(trial.stop_rules))
    if context is not None:
        container["securityContext"] = context
    if options.native_sidecar:
        container["restartPolicy"] = "Always"
    return container
