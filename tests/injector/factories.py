"""Builders of Trial, Pod and katib-config documents shaped as Katib's controllers create them."""

from __future__ import annotations

import copy
from typing import Any

from katib_metrics.injector.config import KatibConfig, load_katib_config
from katib_metrics.injector.settings import SHIPPED_KATIB_CONFIG

JOB_ROLE_MASTER = {"training.kubeflow.org/job-role": "master"}
TRAINJOB_PRIMARY = {"jobset.sigs.k8s.io/replicatedjob-name": "node", "batch.kubernetes.io/job-completion-index": "0"}

ALL_KINDS_CONFIG = SHIPPED_KATIB_CONFIG + """\
    - kind: PrometheusMetric
      image: ghcr.io/example/katib-metrics-collector:0.1.0
      imagePullPolicy: Always
"""


def katib_config(text: str = ALL_KINDS_CONFIG) -> KatibConfig:
    return load_katib_config(text)


def trial(kind: str = "StdOut", *, name: str = "exp-abc12", namespace: str = "team-a",
          source: dict[str, Any] | None = None, primary_pod_labels: dict[str, str] | None = None,
          rules: list[dict[str, Any]] | None = None, custom: dict[str, Any] | None = None,
          container: str = "training-container", objective_type: str = "maximize") -> dict[str, Any]:
    collector: dict[str, Any] = {"kind": kind}
    if custom is not None:
        collector["customCollector"] = custom
    spec: dict[str, Any] = {
        "objective": {"type": objective_type, "objectiveMetricName": "accuracy",
                      "additionalMetricNames": ["loss", "lr"]},
        "metricsCollector": {"collector": collector, **({"source": source} if source else {})},
        "primaryContainerName": container,
    }
    if primary_pod_labels is not None:
        spec["primaryPodLabels"] = primary_pod_labels
    if rules is not None:
        spec["earlyStoppingRules"] = rules
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"katib.kubeflow.org/experiment": "exp", "team": "ml"}},
        "spec": spec,
    }


def pod(*, labels: dict[str, str] | None = None, container: str = "training-container",
        command: list[str] | None = None, args: list[str] | None = None, extra: list[dict[str, Any]] | None = None,
        owner_kind: str = "Job", owner_api: str = "batch/v1", owner_name: str = "exp-abc12") -> dict[str, Any]:
    main: dict[str, Any] = {"name": container, "image": "python:3.11-slim"}
    main["command"] = ["python", "train.py", "--lr=0.1"] if command is None else command
    if args is not None:
        main["args"] = args
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": f"{owner_name}-", "namespace": "team-a", "labels": dict(labels or {}),
                     "ownerReferences": [{"apiVersion": owner_api, "kind": owner_kind, "name": owner_name,
                                          "uid": "6a7b1c44-0d2e-4f5a-8b9c-0123456789ab", "controller": True}]},
        "spec": {"restartPolicy": "Never", "containers": [main, *copy.deepcopy(extra or [])]},
    }


def experiment(algorithm: str = "random", settings: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
        "metadata": {"name": "exp", "namespace": "team-a"},
        "spec": {"algorithm": {"algorithmName": algorithm,
                               "algorithmSettings": [{"name": k, "value": v} for k, v in (settings or {}).items()]}},
    }
