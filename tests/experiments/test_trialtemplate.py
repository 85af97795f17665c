"""The primary container of each trial kind, `${trialParameters.X}` substitution, kubelet expansion."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katib_metrics.parsers.experiment import experiment_from_object
from katib_metrics.parsers.experiment_file import load_experiment
from katib_metrics.parsers.trialtemplate import TemplateError, expand_kubelet, local_command, substitute

SEEDS = Path(__file__).resolve().parents[2] / "examples" / "experiments"


def container(name: str, *command: str, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name, "image": "img", "command": list(command), **({"env": env} if env else {})}


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"template": {"spec": {"containers": list(containers)}}}


def with_spec(trial_spec: dict[str, Any], primary: str = "main", labels: dict[str, str] | None = None,
              params: list[dict[str, str]] | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"primaryContainerName": primary, "trialSpec": trial_spec,
                                "trialParameters": params or [{"name": "learningRate", "reference": "lr"}]}
    if labels:
        template["primaryPodLabels"] = labels
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "x", "namespace": "n"},
            "spec": {"objective": {"type": "minimize", "objectiveMetricName": "loss"},
                     "parameters": [{"name": "lr"}], "trialTemplate": template}}


def argv(obj: dict[str, Any], **params: str) -> tuple[str, ...]:
    return local_command(experiment_from_object(obj), params, "trial-1").argv


LR = "--lr=${trialParameters.learningRate}"


def test_seed_experiments_give_the_images_command_substituted() -> None:
    random = load_experiment(str(SEEDS / "random.yaml"))
    got = local_command(random, {"lr": "0.02", "numberLayers": "3", "optimizer": "adam"}, "t")
    assert got.argv == ("python3", "/opt/mxnet-mnist/mnist.py", "--batch-size=64", "--lr=0.02", "--num-layers=3",
                        "--optimizer=adam")
    assert got.where == "spec.trialTemplate.trialSpec.spec.template.spec.containers[0]"
    pytorch = load_experiment(str(SEEDS / "pytorchjob-mnist.yaml"))
    got = local_command(pytorch, {"learningRate": "0.03", "momentum": "0.7"}, "t")
    assert got.argv[-2:] == ("--lr=0.03", "--momentum=0.7")
    assert ".pytorchReplicaSpecs.Master." in got.where


def test_every_missing_parameter_is_listed_once() -> None:
    random = load_experiment(str(SEEDS / "random.yaml"))
    with pytest.raises(TemplateError, match=r"numberLayers \(num-layers\), optimizer: give --param NAME=VALUE"):
        local_command(random, {"lr": "0.02"}, "t")
    with pytest.raises(TemplateError, match=r"--param momentum: not a trial parameter .*known: learningRate, lr"):
        local_command(random, {"momentum": "0.5"}, "t")


def test_a_command_after_dashes_is_substituted_and_the_containers_env_kept() -> None:
    obj = with_spec({"apiVersion": "batch/v1", "kind": "Job", "spec": pod(container(
        "main", "python", "t.py", env=[{"name": "LR", "value": "${trialParameters.learningRate}"},
                                       {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]))})
    got = local_command(experiment_from_object(obj), {"lr": "0.5"}, "t", ["python3", "local.py", LR])
    assert got.argv == ("python3", "local.py", "--lr=0.5")
    assert dict(got.env) == {"LR": "0.5"}  # valueFrom needs a cluster: left out


@pytest.mark.parametrize(("kind", "spec", "labels", "expected"), [
    ("TFJob", {"tfReplicaSpecs": {"Worker": pod(container("tensorflow", "worker")),
                                  "Chief": pod(container("tensorflow", "chief"))}}, None, "chief"),
    ("PyTorchJob", {"pytorchReplicaSpecs": {"Worker": pod(container("pytorch", "worker")),
                                            "Master": pod(container("pytorch", "master"))}}, None, "master"),
    ("MPIJob", {"mpiReplicaSpecs": {"Worker": pod(container("mpi", "worker")),
                                    "Launcher": pod(container("mpi", "launcher"))}},
     {"training.kubeflow.org/job-role": "launcher"}, "launcher"),
    ("XGBoostJob", {"xgbReplicaSpecs": {"Master": pod(container("xgboost", "master")),
                                        "Worker": pod(container("xgboost", "worker"))}}, None, "master"),
    ("TrainJob", {"runtimeRef": {"name": "torch"}, "trainer": {"image": "i", "command": ["trainer"]}}, None,
     "trainer"),
    ("Workflow", {"templates": [{"name": "step", "container": {"name": "main", "image": "i",
                                                               "command": ["argo"]}}]}, None, "argo"),
])
def test_primary_container_of_each_kind(kind: str, spec: dict[str, Any], labels: dict[str, str] | None,
                                        expected: str) -> None:
    primary = {"TFJob": "tensorflow", "PyTorchJob": "pytorch", "MPIJob": "mpi", "XGBoostJob": "xgboost",
               "TrainJob": "node"}.get(kind, "main")
    obj = with_spec({"apiVersion": "v", "kind": kind, "spec": spec}, primary=primary, labels=labels)
    assert argv(obj)[0] == expected


def test_what_cannot_be_run_says_why() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": pod(container("other", "x"))}
    with pytest.raises(TemplateError, match=r"primaryContainerName 'main' is not a container .*containers: other"):
        argv(with_spec(job))
    no_command = {"apiVersion": "batch/v1", "kind": "Job", "spec": pod({"name": "main", "image": "i"})}
    with pytest.raises(TemplateError, match=r"has no command .*entrypoint"):
        argv(with_spec(no_command))
    obj = with_spec(job)
    del obj["spec"]["trialTemplate"]["trialSpec"]
    obj["spec"]["trialTemplate"]["configMap"] = {"configMapName": "templates", "templatePath": "t.yaml"}
    with pytest.raises(TemplateError, match="in ConfigMap templates"):
        argv(obj)


def test_trial_metadata_references_and_kubelet_expansion() -> None:
    spec = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": {"team": "ml"}},
            "spec": pod(container("main", "sh", "-c", "echo $(NAME) $(UNSET) $$(NAME) ${trialParameters.kind}",
                                  env=[{"name": "NAME", "value": "${trialParameters.trial}"},
                                       {"name": "TEAM", "value": "${trialParameters.team}"}]))}
    params = [{"name": "trial", "reference": "${trialSpec.Name}"}, {"name": "kind", "reference": "${trialSpec.Kind}"},
              {"name": "team", "reference": "${trialSpec.Labels[team]}"}]
    got = local_command(experiment_from_object(with_spec(spec, params=params)), {}, "trial-7")
    assert got.argv == ("sh", "-c", "echo trial-7 $(UNSET) $(NAME) Job")
    assert dict(got.env) == {"NAME": "trial-7", "TEAM": "ml"}


_TEXT = st.text(alphabet=st.characters(blacklist_characters="${}"), max_size=20)


@given(pieces=st.lists(st.tuples(_TEXT, st.sampled_from(["a", "b", "c"])), max_size=5), tail=_TEXT)
def test_substitute_replaces_exactly_the_placeholders(pieces: list[tuple[str, str]], tail: str) -> None:
    values = {"a": "1", "b": "two"}
    text = "".join(f"{lit}${{trialParameters.{name}}}" for lit, name in pieces) + tail
    missing: set[str] = set()
    out = substitute(text, values, missing)
    assert missing == {name for _, name in pieces if name not in values}
    expected = "".join(lit + (values.get(name, f"${{trialParameters.{name}}}"))
                       for lit, name in pieces) + tail
    assert out == expected


@given(st.text(alphabet="$()AB x", max_size=20))
def test_kubelet_expansion_without_env_only_unescapes(text: str) -> None:
    out = expand_kubelet(text, {})
    assert out.replace("$", "") == text.replace("$", "")  # nothing but `$$` → `$` changes without variables
    assert expand_kubelet(text.replace("$", "$$"), {}) == text


def test_a_deep_copy_is_not_modified() -> None:
    obj = with_spec({"apiVersion": "batch/v1", "kind": "Job", "spec": pod(container("main", "python", LR))})
    before = copy.deepcopy(obj)
    assert argv(obj, lr="1") == ("python", "--lr=1")
    assert obj == before
