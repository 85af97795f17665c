"""Decodes Katib's `katib-config` (the KatibConfig document or its ConfigMap) into what the mutation needs.

Katib's decoding rules are kept: the last `runtime.metricsCollectors` entry of a kind wins, an unknown
`imagePullPolicy` becomes `IfNotPresent`, and sidecar resources are defaulted (a zero or missing
cpu / memory / ephemeral-storage gets Katib's default, a negative one removes that resource).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from katib_metrics.injector.errors import ConfigError
from katib_metrics.parsers.safeyaml import load_yaml

__all__ = [
    "CONFIGMAP_KEY",
    "CollectorConfig",
    "KatibConfig",
    "default_resources",
    "load_katib_config",
    "parse_katib_config",
]

log = logging.getLogger(__name__)

CONFIGMAP_KEY = "katib-config.yaml"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RESOURCE_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "50m", "memory": "10Mi", "ephemeral-storage": "500Mi"},
    "limits": {"cpu": "500m", "memory": "100Mi", "ephemeral-storage": "5Gi"},
}
_QUANTITY = re.compile(r"\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """One `runtime.metricsCollectors` entry after Katib's defaulting."""

    kind: str
    image: str
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    wait_all_processes: bool | None = None


@dataclass(frozen=True, slots=True)
class KatibConfig:
    collectors: Mapping[str, CollectorConfig] = field(default_factory=dict)
    inject_security_context: bool = False

    def collector(self, kind: str) -> CollectorConfig | None:
        return self.collectors.get(kind)


def _quantity_sign(value: object) -> int:
    """-1, 0 or 1 for a Kubernetes quantity; an unreadable one counts as positive (the API server judges it)."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return (value > 0) - (value < 0)
    match = _QUANTITY.match(str(value))
    if match is None:
        return 1
    if float(match.group(2)) == 0:
        return 0
    return -1 if match.group(1) == "-" else 1


def default_resources(resources: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Katib's `setResourceRequirementsDefault` applied to a `resources` block."""
    given = dict(resources or {})
    result: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        values = {str(k): str(v) for k, v in dict(given.get(section) or {}).items()}
        for name, default in RESOURCE_DEFAULTS[section].items():
            sign = _quantity_sign(values[name]) if name in values else 0
            if sign < 0:
                values.pop(name)
            elif sign == 0:
                values[name] = default
        if values:
            result[section] = values
    return result


def _collector(entry: object, index: int) -> CollectorConfig:
    where = f"runtime.metricsCollectors[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with `kind` and `image`, got {type(entry).__name__}")
    kind = str(entry.get("kind") or "")
    if not kind:
        raise ConfigError(f"{where}: `kind` is required (e.g. StdOut, File, TensorFlowEvent)")
    policy = str(entry.get("imagePullPolicy") or "")
    wait_all = entry.get("waitAllProcesses")
    if wait_all is not None and not isinstance(wait_all, bool):
        raise ConfigError(f"{where}: `waitAllProcesses` must be true or false, got {wait_all!r}")
    resources = entry.get("resources")
    if resources is not None and not isinstance(resources, Mapping):
        raise ConfigError(f"{where}: `resources` must be a mapping with `requests`/`limits`")
    return CollectorConfig(
        kind=kind,
        image=str(entry.get("image") or "").strip(),
        image_pull_policy=policy if policy in PULL_POLICIES else "IfNotPresent",
        resources=default_resources(resources),
        wait_all_processes=wait_all,
    )


def _unwrap(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The KatibConfig inside a ConfigMap, or the document itself."""
    if document.get("kind") != "ConfigMap":
        return document
    text = (document.get("data") or {}).get(CONFIGMAP_KEY)
    if text is None:
        raise ConfigError(f"ConfigMap has no data key {CONFIGMAP_KEY!r}: put the KatibConfig document there")
    inner = load_yaml(text)
    if not isinstance(inner, Mapping):
        raise ConfigError(f"ConfigMap key {CONFIGMAP_KEY!r} must hold a KatibConfig mapping")
    return inner


def parse_katib_config(document: Mapping[str, Any]) -> KatibConfig:
    """A KatibConfig from the decoded document (KatibConfig or its ConfigMap)."""
    config = _unwrap(document)
    entries = ((config.get("runtime") or {}).get("metricsCollectors")) or []
    if not isinstance(entries, list):
        raise ConfigError("runtime.metricsCollectors must be a list of {kind, image, ...} entries")
    collectors: dict[str, CollectorConfig] = {}
    for index, entry in enumerate(entries):
        parsed = _collector(entry, index)
        if parsed.kind in collectors:
            log.warning("katib-config lists kind %s more than once; the last entry wins (as in Katib)", parsed.kind)
        collectors[parsed.kind] = parsed
    controller = ((config.get("init") or {}).get("controller")) or {}
    return KatibConfig(collectors=collectors, inject_security_context=bool(controller.get("injectSecurityContext")))


def load_katib_config(text: str, source: str = "katib-config") -> KatibConfig:
    """Parse YAML text holding a KatibConfig or the ConfigMap that wraps it."""
    try:
        document = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: expected a KatibConfig or ConfigMap mapping")
    try:
        return parse_katib_config(document)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err
