"""Reading an Experiment as the sidecar would get it: Katib's defaulting, files, and the webhook's own args."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.injector.config import CollectorConfig
from katib_metrics.injector.sidecar import SidecarOptions, sidecar_args
from katib_metrics.injector.trial import Trial
from katib_metrics.parsers.experiment import ExperimentError, experiment_from_object
from katib_metrics.parsers.experiment_file import load_experiment
from katib_metrics.parsers.experiment_flags import merge_flags
from katib_metrics.parsers.model import DEFAULT_METRICS_FILE, FileFormat, ObjectiveType, Strategy

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "examples" / "experiments"


def experiment(objective: dict[str, Any] | None = None, collector: dict[str, Any] | None = None,
               kind: str = "Experiment") -> dict[str, Any]:
    spec: dict[str, Any] = {"objective": objective or {"type": "maximize", "objectiveMetricName": "accuracy",
                                                        "additionalMetricNames": ["loss"]}}
    if collector is not None:
        spec["metricsCollector" if kind == "Trial" else "metricsCollectorSpec"] = collector
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": kind, "metadata": {"name": "e", "namespace": "ns"},
            "spec": spec}


def test_seed_random_search_is_read_as_the_webhook_gives_it() -> None:
    exp = load_experiment(str(SEEDS / "random.yaml"))
    assert exp.title == "Experiment kubeflow/random"
    assert exp.metric_names == ("Validation-accuracy", "Train-accuracy")
    assert exp.strategies == (("Validation-accuracy", "max"), ("Train-accuracy", "max"))
    assert exp.sidecar_args() == ["-m", "Validation-accuracy;Train-accuracy", "-o-type", "maximize",
                                  "-path", DEFAULT_METRICS_FILE, "-format", "TEXT"]
    spec = exp.spec()
    assert (spec.format, spec.filters, spec.objective_type) == (FileFormat.TEXT, (), ObjectiveType.MAXIMIZE)


def test_strategy_defaulting_keeps_given_entries_and_follows_the_type_for_the_rest() -> None:
    exp = experiment_from_object(experiment({"type": "minimize", "objectiveMetricName": "loss",
                                             "additionalMetricNames": ["acc", "f1"],
                                             "metricStrategies": [{"name": "acc", "value": "latest"}]}))
    # Katib's setDefaultObjective: given entries first, then the objective, then additional metrics by type.
    assert exp.strategies == (("acc", "latest"), ("loss", "min"), ("f1", "min"))
    assert exp.spec().strategy_for("acc") is Strategy.LATEST
    assert exp.spec().strategy_for("f1") is Strategy.MIN


@pytest.mark.parametrize(("collector", "expected"), [
    (None, ("StdOut", "", "", "")),
    ({"collector": {"kind": "File"}}, ("File", DEFAULT_METRICS_FILE, "File", "TEXT")),
    ({"collector": {"kind": "TensorFlowEvent"}}, ("TensorFlowEvent", "/var/log/katib/tfevent/", "Directory", "")),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/k/m.json", "format": "JSON"}}},
     ("File", "/k/m.json", "File", "JSON")),
    ({"collector": {}}, ("", "", "", "")),  # Katib defaults only a missing collector: an empty kind stays empty
])
def test_collector_defaulting(collector: dict[str, Any] | None, expected: tuple[str, ...]) -> None:
    got = experiment_from_object(experiment(collector=collector)).collector
    assert (got.kind, got.path, got.path_kind, got.file_format) == expected


def test_prometheus_defaults_and_the_kinds_with_nothing_to_parse() -> None:
    prom = experiment_from_object(experiment(collector={"collector": {"kind": "PrometheusMetric"}}))
    assert (prom.collector.http_port, prom.collector.http_path) == ("8080", "/metrics")
    assert prom.spec().format is FileFormat.PROMETHEUS
    for kind in ("Push", "Custom", "Bogus", ""):
        with pytest.raises(ExperimentError, match=r"spec\.metricsCollectorSpec\.collector\.kind"):
            experiment_from_object(experiment(collector={"collector": {"kind": kind}})).spec()


def test_json_file_has_no_filters_and_flags_override() -> None:
    exp = experiment_from_object(experiment(collector={
        "collector": {"kind": "File"}, "source": {"filter": {"metricsFormat": ["(a)=(b)"]},
                                                  "fileSystemPath": {"path": "/k/m.log", "format": "TEXT"}}}))
    assert exp.spec().filters == ("(a)=(b)",)
    assert merge_flags(exp, fmt=FileFormat.JSON).filters == ()
    merged = merge_flags(exp, names=("loss",), filters=(r"(\w+):(\S+)",), objective_type="minimize",
                         strategies={"loss": Strategy.LATEST})
    assert merged.metric_names == ("loss",) and merged.filters == (r"(\w+):(\S+)",)
    assert merged.objective_type is ObjectiveType.MINIMIZE
    assert merged.strategy_for("loss") is Strategy.LATEST and merged.strategy_for("accuracy") is Strategy.MIN


def test_files_json_multi_document_list_and_choice(tmp_path: Path) -> None:
    one = experiment()
    other = {**experiment(), "metadata": {"name": "other"}}
    (tmp_path / "e.json").write_text(json.dumps(one))
    assert load_experiment(str(tmp_path / "e.json")).name == "e"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump_all([pod, one, other]))
    with pytest.raises(ExperimentError, match=r"holds 2 .*Experiment e, Experiment other.*multi.yaml#NAME"):
        load_experiment(str(tmp_path / "multi.yaml"))
    assert load_experiment(f"{tmp_path / 'multi.yaml'}#other").name == "other"
    (tmp_path / "list.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [pod, one]}))
    assert load_experiment(str(tmp_path / "list.yaml")).name == "e"
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    with pytest.raises(ExperimentError, match=r"no Katib Experiment or Trial .*\(found: Pod\)"):
        load_experiment(str(tmp_path / "pod.yaml"))
    (tmp_path / "bad.yaml").write_text("spec:\n  a: [1,\n")
    with pytest.raises(ExperimentError, match=r"bad.yaml: not valid YAML or JSON \(line \d+\)"):
        load_experiment(str(tmp_path / "bad.yaml"))


_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC-_0123456789", min_size=1, max_size=12)
_COLLECTORS = st.one_of(
    st.just({"collector": {"kind": "StdOut"}}),
    st.builds(lambda path, fmt: {"collector": {"kind": "File"},
                                 "source": {"fileSystemPath": {"path": path, "kind": "File", "format": fmt}}},
              st.sampled_from(["/var/log/katib/metrics.log", "/katib/mnist.log", "/out/m.json"]),
              st.sampled_from(["TEXT", "JSON"])),
    st.builds(lambda path: {"collector": {"kind": "TensorFlowEvent"},
                            "source": {"fileSystemPath": {"path": path, "kind": "Directory"}}},
              st.sampled_from(["/var/log/katib/tfevent/", "/logs/tb"])),
)


@settings(max_examples=60, deadline=None)
@given(objective=_NAMES, additional=st.lists(_NAMES, max_size=3, unique=True), collector=_COLLECTORS,
       filters=st.lists(st.sampled_from([r"([\w|-]+)\s*:\s*([+-]?\d*\.?\d+)", r"(\w+)=(\S+)"]), max_size=2,
                        unique=True),
       objective_type=st.sampled_from(["minimize", "maximize"]))
def test_metric_args_are_the_injectors_for_the_same_trial(objective: str, additional: list[str],
                                                          collector: dict[str, Any], filters: list[str],
                                                          objective_type: str) -> None:
    # The oracle is our webhook: for the Trial the experiment controller makes, its sidecar gets these args.
    additional = [name for name in additional if name != objective]
    if filters:
        collector = {**collector, "source": {**collector.get("source", {}), "filter": {"metricsFormat": filters}}}
    trial = experiment({"type": objective_type, "objectiveMetricName": objective,
                        "additionalMetricNames": additional}, collector, kind="Trial")
    ours = experiment_from_object(trial).sidecar_args()
    theirs = sidecar_args(Trial.from_object(trial), CollectorConfig("StdOut", "img"), SidecarOptions(), None, "ns")
    assert theirs[:2] == ["-t", "e"] and theirs[6:8] == ["-s-db", SidecarOptions().db_manager_address]
    assert ours == theirs[2:6] + theirs[8:]
