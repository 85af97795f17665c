"""Reading an Experiment file: YAML or JSON, several documents or a `kind: List`, `FILE#NAME` to pick one.

PyYAML is imported only when the file is not JSON. Every failure is one `ExperimentError` line naming
the file and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from katib_metrics.parsers.experiment import Experiment, ExperimentError, experiment_from_object

__all__ = ["load_documents", "load_experiment"]

_API_GROUP = "kubeflow.org/"


def load_documents(path: str) -> list[Any]:
    """Every document of a YAML or JSON file; ExperimentError (one line) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ExperimentError(f"{path}: cannot read the Experiment file: {getattr(err, 'strerror', None) or err}") \
            from None
    try:
        return [json.loads(text)]
    except (ValueError, RecursionError):  # JSON is YAML: the YAML reader names the problem
        pass
    try:
        import yaml

        from katib_metrics.parsers.safeyaml import load_yaml_all
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        raise ExperimentError(f"{path}: reading YAML needs PyYAML: pip install pyyaml") from None
    try:
        return [doc for doc in load_yaml_all(text) if doc is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ExperimentError(f"{path}: not valid YAML or JSON{where}: {problem}") from None


def _flatten(documents: Sequence[Any]) -> list[Mapping[str, Any]]:
    objects: list[Mapping[str, Any]] = []
    for doc in documents:
        is_list = isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List")
        if is_list and isinstance(doc.get("items"), list):
            objects += _flatten(doc["items"])
        elif isinstance(doc, list):
            objects += _flatten(doc)
        elif isinstance(doc, Mapping):
            objects.append(doc)
    return objects


def _is_katib(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") in ("Experiment", "Trial") and str(obj.get("apiVersion", "")).startswith(_API_GROUP)


def _name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, Mapping) else ""


def _split_choice(path: str) -> tuple[str, str | None]:
    """`FILE#NAME` picks one of several objects; a file whose name holds `#` still opens as is."""
    if "#" in path and not os.path.exists(path):
        file, _, name = path.rpartition("#")
        return file, name
    return path, None


def load_experiment(path: str) -> Experiment:
    """The Experiment or Trial of a file (`FILE#NAME` for one of several), after Katib's defaulting."""
    file, wanted = _split_choice(path)
    objects = _flatten(load_documents(file))
    candidates = [obj for obj in objects if _is_katib(obj)]
    if wanted is not None:
        candidates = [obj for obj in candidates if _name_of(obj) == wanted]
    if not candidates:
        found = ", ".join(sorted({str(obj.get("kind") or "?") for obj in objects})) or "nothing"
        what = f"named {wanted!r} " if wanted is not None else ""
        raise ExperimentError(f"{file}: no Katib Experiment or Trial (apiVersion kubeflow.org/v1beta1) {what}"
                              f"in the file (found: {found})")
    if len(candidates) > 1:
        names = ", ".join(f"{obj['kind']} {_name_of(obj) or '(unnamed)'}" for obj in candidates)
        raise ExperimentError(f"{file}: holds {len(candidates)} Experiments/Trials ({names}): "
                              f"choose one with {file}#NAME")
    return experiment_from_object(candidates[0], file)
