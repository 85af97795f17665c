"""Kind `Push` as Katib's webhook does it: labels and `KATIB_TRIAL_NAME` only, and nothing else looked up."""

from __future__ import annotations

import base64
import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest

from katib_metrics.injector.config import KatibConfig
from katib_metrics.injector.mutate import Resolved, mutate_pod
from katib_metrics.injector.sidecar import SidecarOptions
from katib_metrics.injector.trial import Trial
from tests.injector import factories as f
from tests.injector.apiserver import FakeApiServer
from tests.injector.test_server import Webhook, review

TRIAL_ENV = {"name": "KATIB_TRIAL_NAME",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['katib.kubeflow.org/trial']"}}}


def mutate(pod: dict[str, Any], trial: dict[str, Any]) -> dict[str, Any]:
    # An empty katib-config and nothing resolved: Katib's Push path reads neither.
    result = mutate_pod(pod, Trial.from_object(trial), KatibConfig(), SidecarOptions(), Resolved())
    kubernetes_validate.validate(result.pod, "1.33.0", strict=True)
    return result.pod


def primary(pod: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = pod["spec"]["containers"][0]
    return found


def test_push_adds_katibs_labels_and_env_and_nothing_else() -> None:
    pod = f.pod()
    mutated = mutate(pod, f.trial("Push"))
    assert mutated["metadata"]["labels"] == {"katib.kubeflow.org/experiment": "exp", "team": "ml",
                                             "katib.kubeflow.org/trial": "exp-abc12"}
    assert primary(mutated)["env"] == [TRIAL_ENV]
    assert {k: v for k, v in mutated["spec"].items() if k != "containers"} == \
        {k: v for k, v in pod["spec"].items() if k != "containers"}
    assert {k: v for k, v in primary(mutated).items() if k != "env"} == primary(pod)


def test_a_trial_name_set_in_the_template_is_replaced_by_the_trials_label() -> None:
    # Katib appends its entry, and the last of two same-named variables wins: the pod sees the Trial's name.
    pod = f.pod()
    primary(pod)["env"] = [{"name": "A", "value": "1"}, {"name": "KATIB_TRIAL_NAME", "value": "template-value"}]
    assert primary(mutate(pod, f.trial("Push")))["env"] == [{"name": "A", "value": "1"}, TRIAL_ENV]


def test_a_user_container_named_like_a_collector_does_not_stop_the_push_mutation() -> None:
    pod = f.pod(extra=[{"name": "metrics-collector", "image": "prom/statsd-exporter"}])
    mutated = mutate(pod, f.trial("Push"))
    assert mutated["metadata"]["labels"]["katib.kubeflow.org/trial"] == "exp-abc12"
    assert primary(mutated)["env"] == [TRIAL_ENV]
    assert [c["name"] for c in mutated["spec"]["containers"]] == ["training-container", "metrics-collector"]


def test_a_second_admission_changes_nothing_more() -> None:
    once = mutate(f.pod(), f.trial("Push"))
    assert mutate(once, f.trial("Push")) == once


def test_non_primary_pods_get_labels_and_env_too() -> None:
    trial = f.trial("Push", primary_pod_labels=f.JOB_ROLE_MASTER)
    mutated = mutate(f.pod(labels={"training.kubeflow.org/job-role": "worker"}), trial)
    assert primary(mutated)["env"] == [TRIAL_ENV]
    assert mutated["metadata"]["labels"]["katib.kubeflow.org/trial"] == "exp-abc12"


@pytest.fixture
def push_api() -> Iterator[FakeApiServer]:
    """pod → Job → Push Trial, and no katib-config, Suggestion or Experiment at all."""
    server = FakeApiServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    server.add({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "exp-abc12", "namespace": "team-a",
                             "ownerReferences": [{"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
                                                  "name": "exp-abc12", "uid": "u1", "controller": True}]}}, "jobs")
    server.add(f.trial("Push"), "trials")
    yield server
    server.shutdown()
    server.server_close()


def test_the_webhook_admits_a_push_pod_without_katib_config_or_suggestion(push_api: FakeApiServer,
                                                                          tmp_path: pathlib.Path) -> None:
    hook = Webhook(push_api, tmp_path)
    try:
        pod = f.pod()
        response = hook.post(review(pod))["response"]
    finally:
        hook.close()
    assert response["allowed"] is True, response
    mutated = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    assert primary(mutated)["env"] == [TRIAL_ENV]
    looked_up = sorted(path for path in push_api.hits if "configmaps" in path or "suggestions" in path
                       or "experiments" in path)
    assert looked_up == []
