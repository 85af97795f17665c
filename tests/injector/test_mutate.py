"""The pure mutation, table-driven over collector kinds and Katib's trial kinds; pods checked by the k8s schema."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest

from katib_metrics.injector.errors import DeniedError, EntrypointError
from katib_metrics.injector.mutate import ImageConfig, Resolved, go_dir, mutate_pod
from katib_metrics.injector.patch import json_patch
from katib_metrics.injector.sidecar import SidecarOptions
from katib_metrics.injector.trial import Trial, algorithm_from_object
from tests.injector import factories as f

OPTIONS = SidecarOptions()
RANDOM = algorithm_from_object(f.experiment())


def run(trial_doc: dict[str, Any], pod_doc: dict[str, Any], *, options: SidecarOptions = OPTIONS,
        resolved: Resolved | None = None, config_text: str = f.ALL_KINDS_CONFIG) -> dict[str, Any]:
    original = copy.deepcopy(pod_doc)
    mutation = mutate_pod(pod_doc, Trial.from_object(trial_doc), f.katib_config(config_text), options,
                          resolved or Resolved(algorithm=RANDOM))
    assert pod_doc == original, "the input pod must not be modified"
    kubernetes_validate.validate(mutation.pod, "1.33.0", strict=True)
    patched: dict[str, Any] = jsonpatch.apply_patch(original, json_patch(original, mutation.pod))
    assert patched == mutation.pod
    return mutation.pod


def containers(pod_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_doc["spec"]["containers"]}


def sidecar_of(pod_doc: dict[str, Any]) -> dict[str, Any]:
    last: dict[str, Any] = pod_doc["spec"]["containers"][-1]
    return last


FILE_SOURCE = {"fileSystemPath": {"path": "/katib/mnist.log", "kind": "File", "format": "JSON"}}
TF_SOURCE = {"fileSystemPath": {"path": "/var/log/katib/tfevent/", "kind": "Directory"}}
PROM_SOURCE = {"httpGet": {"path": "/prom", "port": 9090}}
CUSTOM = {"name": "my-collector", "image": "example/collector:1", "args": ["--x"]}

KIND_CASES = [
    # kind, source, sidecar name, args after -s-db, volume mount path, wrapped
    ("StdOut", None, "metrics-logger-and-collector",
     ["-path", "/var/log/katib/metrics.log", "-format", "TEXT"], "/var/log/katib", True),
    ("File", FILE_SOURCE, "metrics-logger-and-collector",
     ["-path", "/katib/mnist.log", "-format", "JSON"], "/katib", True),
    ("TensorFlowEvent", TF_SOURCE, "metrics-collector", ["-path", "/var/log/katib/tfevent/"],
     "/var/log/katib/tfevent/", True),
    ("PrometheusMetric", PROM_SOURCE, "metrics-collector", ["--prometheus-url", "http://localhost:9090/prom"],
     None, False),
]


@pytest.mark.parametrize(("kind", "source", "name", "tail", "mount", "wrapped"), KIND_CASES,
                         ids=[c[0] for c in KIND_CASES])
def test_every_auto_injected_kind(kind: str, source: dict[str, Any] | None, name: str, tail: list[str],
                                  mount: str | None, wrapped: bool) -> None:
    result = run(f.trial(kind, source=source), f.pod())
    sidecar = sidecar_of(result)
    assert sidecar["name"] == name
    assert sidecar["args"] == ["-t", "exp-abc12", "-m", "accuracy;loss;lr", "-o-type", "maximize",
                               "-s-db", "katib-db-manager.kubeflow:6789", *tail]
    assert "command" not in sidecar
    assert result["spec"]["shareProcessNamespace"] is True
    labels = result["metadata"]["labels"]
    assert labels["katib.kubeflow.org/trial"] == "exp-abc12" and labels["team"] == "ml"
    primary = containers(result)["training-container"]
    assert {"name": "KATIB_TRIAL_NAME", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.labels['katib.kubeflow.org/trial']"}}} in primary["env"]
    volumes = {v["name"]: v for v in result["spec"].get("volumes", [])}
    if mount is None:
        assert "metrics-volume" not in volumes
    else:
        assert volumes["metrics-volume"] == {"name": "metrics-volume", "emptyDir": {}}
        for container in (primary, sidecar):
            assert {"name": "metrics-volume", "mountPath": mount} in container["volumeMounts"]
    assert (primary["command"] == ["sh", "-c"]) is wrapped
    if wrapped:
        assert primary["args"][1:] == ["sh", "python", "train.py", "--lr=0.1"]


def test_stdout_matches_katib_resources_and_marker_text() -> None:
    result = run(f.trial(), f.pod())
    sidecar = sidecar_of(result)
    assert sidecar["image"] == "ghcr.io/kubeflow/katib/file-metrics-collector:latest"
    assert sidecar["imagePullPolicy"] == "IfNotPresent"
    assert sidecar["resources"] == {
        "requests": {"cpu": "50m", "memory": "10Mi", "ephemeral-storage": "500Mi"},
        "limits": {"cpu": "500m", "memory": "100Mi", "ephemeral-storage": "5Gi"}}
    script = containers(result)["training-container"]["args"][0]
    assert "echo completed > /var/log/katib/$$$$.pid" in script


def test_tfevent_resources_from_shipped_config() -> None:
    sidecar = sidecar_of(run(f.trial("TensorFlowEvent", source=TF_SOURCE), f.pod()))
    assert sidecar["resources"]["limits"]["memory"] == "1Gi"
    assert sidecar["image"].endswith("tfevent-metrics-collector:latest")


def test_push_adds_labels_and_env_only() -> None:
    result = run(f.trial("Push"), f.pod())
    assert [c["name"] for c in result["spec"]["containers"]] == ["training-container"]
    assert "shareProcessNamespace" not in result["spec"]
    primary = containers(result)["training-container"]
    assert primary["command"] == ["python", "train.py", "--lr=0.1"]
    assert primary["env"][0]["name"] == "KATIB_TRIAL_NAME"


def test_custom_collector_is_the_users_container_verbatim() -> None:
    source = {"fileSystemPath": {"path": "/out", "kind": "Directory"}}
    result = run(f.trial("Custom", custom=CUSTOM, source=source), f.pod())
    sidecar = sidecar_of(result)
    assert {k: v for k, v in sidecar.items() if k != "volumeMounts"} == CUSTOM
    assert sidecar["volumeMounts"] == [{"name": "metrics-volume", "mountPath": "/out"}]
    assert result["spec"]["shareProcessNamespace"] is True
    assert containers(result)["training-container"]["command"] == ["python", "train.py", "--lr=0.1"]


def test_custom_without_path_has_no_volume() -> None:
    result = run(f.trial("Custom", custom=CUSTOM), f.pod())
    assert "volumes" not in result["spec"]


# Katib's trial kinds: (primaryPodLabels, pod labels, is primary)
TRIAL_KIND_CASES = {
    "Job": (None, {"batch.kubernetes.io/job-name": "exp-abc12"}, True),
    "TFJob-master": (f.JOB_ROLE_MASTER, {"training.kubeflow.org/job-role": "master"}, True),
    "TFJob-worker": (f.JOB_ROLE_MASTER, {"training.kubeflow.org/job-role": "worker"}, False),
    "PyTorchJob-master": (f.JOB_ROLE_MASTER, {"training.kubeflow.org/job-role": "master",
                                              "training.kubeflow.org/replica-type": "master"}, True),
    "PyTorchJob-worker": (f.JOB_ROLE_MASTER, {"training.kubeflow.org/replica-type": "worker"}, False),
    "MPIJob-launcher-as-master": (f.JOB_ROLE_MASTER, {"training.kubeflow.org/job-role": "master"}, True),
    "TrainJob-node-0": (f.TRAINJOB_PRIMARY, {"jobset.sigs.k8s.io/replicatedjob-name": "node",
                                             "batch.kubernetes.io/job-completion-index": "0"}, True),
    "TrainJob-node-1": (f.TRAINJOB_PRIMARY, {"jobset.sigs.k8s.io/replicatedjob-name": "node",
                                             "batch.kubernetes.io/job-completion-index": "1"}, False),
}


@pytest.mark.parametrize("case", sorted(TRIAL_KIND_CASES))
def test_trial_kinds_primary_pod_selection(case: str) -> None:
    primary_labels, labels, is_primary = TRIAL_KIND_CASES[case]
    container = "pytorch" if "PyTorch" in case else "training-container"
    result = run(f.trial(primary_pod_labels=primary_labels, container=container),
                 f.pod(labels=labels, container=container))
    names = [c["name"] for c in result["spec"]["containers"]]
    assert names == ([container, "metrics-logger-and-collector"] if is_primary else [container])
    assert result["metadata"]["labels"]["katib.kubeflow.org/trial"] == "exp-abc12"
    assert containers(result)[container]["env"][0]["name"] == "KATIB_TRIAL_NAME"


def test_non_primary_pod_without_primary_container_gets_labels_only() -> None:
    result = run(f.trial(primary_pod_labels=f.JOB_ROLE_MASTER),
                 f.pod(labels={"training.kubeflow.org/job-role": "ps"}, container="parameter-server"))
    assert result["metadata"]["labels"]["katib.kubeflow.org/trial"] == "exp-abc12"
    assert "env" not in result["spec"]["containers"][0]


def test_primary_pod_without_primary_container_is_denied_naming_it() -> None:
    with pytest.raises(DeniedError, match="Unable to find primary container training-container"):
        run(f.trial(), f.pod(container="main"))


def test_early_stopping_args_and_wrapper() -> None:
    rules: list[dict[str, Any]] = [{"name": "accuracy", "value": "0.6", "comparison": "less", "startStep": 4},
             {"name": "loss", "value": "2", "comparison": "greater"}]
    result = run(f.trial(rules=rules), f.pod())
    args = sidecar_of(result)["args"]
    assert args[-6:] == ["-stop-rule", "accuracy;0.6;less;4", "-stop-rule", "loss;2;greater;0",
                         "-s-earlystop", "exp-random.team-a:6788"]
    assert "early-stopped" in containers(result)["training-container"]["args"][0]


def test_early_stopping_without_algorithm_is_denied() -> None:
    with pytest.raises(DeniedError, match="early-stopping rules"):
        run(f.trial(rules=[{"name": "accuracy", "value": "0.6", "comparison": "less"}]), f.pod(),
            resolved=Resolved())


def test_wait_all_processes_and_filters_in_katib_order() -> None:
    config = "runtime:\n  metricsCollectors:\n    - kind: File\n      image: img\n      waitAllProcesses: false\n"
    source = {"fileSystemPath": {"path": "/katib/m.log", "kind": "File", "format": "TEXT"},
              "filter": {"metricsFormat": [r"(\w+)=(\d+)", r"(\w+):(\S+)"]}}
    args = sidecar_of(run(f.trial("File", source=source), f.pod(), config_text=config))["args"]
    assert args[8:] == ["-path", "/katib/m.log", "-f", r"(\w+)=(\d+);(\w+):(\S+)", "-format", "TEXT",
                        "-w", "false"]


def test_suggestion_volume_for_pbt() -> None:
    pbt = algorithm_from_object(f.experiment("pbt", {"suggestion_trial_dir": "/var/log/katib/checkpoints/"}))
    result = run(f.trial(), f.pod(), resolved=Resolved(algorithm=pbt))
    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    assert volumes["suggestion-volume"]["persistentVolumeClaim"] == {"claimName": "exp-pbt"}
    assert {"name": "suggestion-volume", "mountPath": "/var/log/katib/checkpoints/",
            "subPath": "exp/exp-abc12"} in containers(result)["training-container"]["volumeMounts"]


def test_restricted_security_context_runs_as_training_user() -> None:
    pod_doc = f.pod()
    pod_doc["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 3000}
    pod_doc["spec"]["containers"][0]["securityContext"] = {"runAsUser": 2000, "runAsNonRoot": True}
    context = sidecar_of(run(f.trial(), pod_doc))["securityContext"]
    assert context == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}, "runAsUser": 2000, "runAsGroup": 3000,
                       "runAsNonRoot": True}


RULES: list[dict[str, Any]] = [{"name": "accuracy", "value": "0.6", "comparison": "less", "startStep": 4}]
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}


@pytest.mark.parametrize(("pod_ctx", "container_ctx", "expected"), [
    # The training's user unknown (its image's, most often root): root with CAP_KILL only, to signal any user.
    (None, None, {"runAsUser": 0, "runAsNonRoot": False, "capabilities": {"drop": ["ALL"], "add": ["KILL"]}}),
    ({"runAsNonRoot": False}, {"runAsGroup": 5},
     {"runAsUser": 0, "runAsNonRoot": False, "runAsGroup": 5, "capabilities": {"drop": ["ALL"], "add": ["KILL"]}}),
    # The training's user known (container or pod): the same user, no capability.
    (None, {"runAsUser": 1000}, {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}}),
    ({"runAsUser": 0}, None, {"runAsUser": 0, "capabilities": {"drop": ["ALL"]}}),
    # runAsNonRoot asked without a user: kept (early stopping then only reports; the log says why).
    ({"runAsNonRoot": True}, None, {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}),
], ids=["unknown-user", "unknown-user-group", "container-user", "pod-root", "non-root-asked"])
def test_early_stopping_sidecar_can_signal_the_training_with_least_privilege(
        pod_ctx: dict[str, Any] | None, container_ctx: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    pod_doc = f.pod()
    if pod_ctx is not None:
        pod_doc["spec"]["securityContext"] = pod_ctx
    if container_ctx is not None:
        pod_doc["spec"]["containers"][0]["securityContext"] = container_ctx
    result = run(f.trial(rules=RULES), pod_doc)
    assert sidecar_of(result)["securityContext"] == {**RESTRICTED, **expected}
    assert result["spec"]["shareProcessNamespace"] is True
    # Without rules nothing is signalled: the image's own non-root user, no capability.
    plain = sidecar_of(run(f.trial(), pod_doc))["securityContext"]
    assert plain == {**RESTRICTED, "capabilities": {"drop": ["ALL"]}, **(pod_ctx or {}), **(container_ctx or {})}


def test_katib_inject_security_context_copies_first_container() -> None:
    config = f.ALL_KINDS_CONFIG + "init:\n  controller:\n    injectSecurityContext: true\n"
    pod_doc = f.pod()
    pod_doc["spec"]["containers"][0]["securityContext"] = {"privileged": False, "runAsUser": 7}
    result = run(f.trial(), pod_doc, config_text=config)
    assert sidecar_of(result)["securityContext"] == {"privileged": False, "runAsUser": 7}
    assert "katib-collector-scratch" not in {v["name"] for v in result["spec"]["volumes"]}


def test_native_sidecar_is_an_init_container_with_restart_policy_always() -> None:
    result = run(f.trial(), f.pod(), options=SidecarOptions(native_sidecar=True))
    init = result["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["metrics-logger-and-collector"]
    assert init[0]["restartPolicy"] == "Always"
    assert {"name": "metrics-volume", "mountPath": "/var/log/katib"} in init[0]["volumeMounts"]
    assert [c["name"] for c in result["spec"]["containers"]] == ["training-container"]


def test_metrics_port_only_when_enabled() -> None:
    args = sidecar_of(run(f.trial(), f.pod(), options=SidecarOptions(metrics_port=9101)))["args"]
    assert args[-2:] == ["--metrics-port", "9101"]


def test_already_injected_pod_is_left_alone() -> None:
    first = run(f.trial(), f.pod())
    mutation = mutate_pod(first, Trial.from_object(f.trial()), f.katib_config(), OPTIONS, Resolved(algorithm=RANDOM))
    assert mutation.changed is False and mutation.pod == first


def test_missing_kind_config_is_denied_with_the_fix() -> None:
    with pytest.raises(DeniedError, match="failed to find metrics collector config for kind: PrometheusMetric"):
        run(f.trial("PrometheusMetric", source=PROM_SOURCE), f.pod(),
            config_text="runtime:\n  metricsCollectors: []\n")


def test_no_command_uses_image_entrypoint_escaped_for_kubelet() -> None:
    image = ImageConfig(entrypoint=("/entry.sh",), cmd=("--cost=$(FREE)", "$HOME"))
    result = run(f.trial("File", source=FILE_SOURCE), f.pod(command=[]), resolved=Resolved(RANDOM, image))
    assert containers(result)["training-container"]["args"][1:] == ["sh", "/entry.sh", "--cost=$$(FREE)", "$$HOME"]
    args_given = run(f.trial("File", source=FILE_SOURCE), f.pod(command=[], args=["--x=$(A)"]),
                     resolved=Resolved(RANDOM, image))
    assert containers(args_given)["training-container"]["args"][1:] == ["sh", "/entry.sh", "--x=$(A)"]


def test_no_command_and_no_image_config_is_denied_saying_set_command() -> None:
    with pytest.raises(EntrypointError, match="set `command`"):
        run(f.trial(), f.pod(command=[]))


def test_other_containers_untouched() -> None:
    helper = {"name": "helper", "image": "busybox", "command": ["sleep", "1"]}
    result = run(f.trial(), f.pod(extra=[helper]))
    assert containers(result)["helper"] == helper


@pytest.mark.parametrize(("path", "expected"), [
    ("/var/log/katib/metrics.log", "/var/log/katib"), ("/a/", "/a"), ("/m.log", "/"), ("x", "."),
    ("/a//b/../c/m.log", "/a/c")])
def test_go_dir(path: str, expected: str) -> None:
    assert go_dir(path) == expected
