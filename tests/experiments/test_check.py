"""`check`: Katib's validation rules one by one, each pitfall, the group scanner, and the command's exits."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.check_pitfalls import capture_groups, pitfalls
from katib_metrics.parsers.check_rules import katib_errors
from katib_metrics.parsers.experiment import experiment_from_object

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "experiments" / "random.yaml").read_text())


def variant(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["spec"].update(spec)
    return obj


def container(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = obj["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    return found


def codes(obj: dict[str, Any]) -> list[str]:
    return [f.code for f in pitfalls(experiment_from_object(obj))]


def errors(obj: dict[str, Any]) -> list[str]:
    return [f"{f.field}: {f.message}" for f in katib_errors(experiment_from_object(obj))]


def test_the_seeds_are_clean() -> None:
    for name in ("random.yaml", "pytorchjob-mnist.yaml"):
        exp = experiment_from_object(yaml.safe_load((ROOT / "examples" / "experiments" / name).read_text()))
        assert katib_errors(exp) == [] and pitfalls(exp) == []


@pytest.mark.parametrize(("collector", "expected"), [
    ({"collector": {"kind": "Nope"}}, "collector.kind: invalid metrics collector kind 'Nope'"),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "rel.log"}}}, "an absolute file path"),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/a.log", "format": "XML"}}},
     "format: must be TEXT or JSON, not 'XML'"),
    ({"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {"path": "/tb", "format": "TEXT"}}},
     "format: must be empty for TensorFlowEvent"),
    ({"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {"path": "/tb", "kind": "File"}}},
     "an absolute directory path with kind Directory"),
    ({"collector": {"kind": "PrometheusMetric"}, "source": {"httpGet": {"port": -1, "path": "metrics"}}},
     "httpGet.port: must be a positive integer"),
    ({"collector": {"kind": "Custom"}}, "customCollector: is required for kind Custom"),
    ({"source": {"filter": {"metricsFormat": ["(a)(b"]}}}, "invalid filter '(a)(b'"),
    ({"source": {"filter": {"metricsFormat": [r"(\w+)=(?P=x)"]}}}, "not supported by RE2"),
    ({"source": {"filter": {"metricsFormat": [r"\w+=(\d+)"]}}}, "two top subexpressions are required"),
])
def test_collector_rules(collector: dict[str, Any], expected: str) -> None:
    found = errors(variant(metricsCollectorSpec=collector))
    assert any(expected in line for line in found), found


def test_objective_and_template_rules() -> None:
    obj = variant(objective={"type": "best", "objectiveMetricName": "a", "additionalMetricNames": ["a"]})
    assert errors(obj) == ["spec.objective.type: must be minimize or maximize, not 'best'",
                           "spec.objective.additionalMetricNames: should not contain "
                           "spec.objective.objectiveMetricName (a)"]
    obj = variant()
    obj["spec"]["trialTemplate"]["trialParameters"].append({"name": "unused", "reference": "lr2"})
    container(obj)["command"].append("--seed=${trialParameters.seed}")
    found = errors(obj)
    assert "spec.trialTemplate.trialParameters[3].reference: 'lr2' does not exist in spec.parameters " \
           "(lr, num-layers, optimizer)" in found
    assert any("'unused' is not used in the trial template" in line for line in found)
    assert "spec.trialTemplate: ${trialParameters.seed} in the template are not in trialParameters" in found
    argo = variant()
    argo["spec"]["trialTemplate"]["trialSpec"] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                                  "spec": {"x": "${trialParameters.learningRate}"}}
    assert any("successCondition and failureCondition must be specified for kind Workflow" in line
               for line in errors(argo))


def test_pitfalls_each_code() -> None:
    obj = variant(metricsCollectorSpec={"collector": {"kind": "File"},
                                        "source": {"fileSystemPath": {"path": "/opt/mxnet-mnist/metrics.log"}}})
    assert codes(obj) == ["metrics_volume_hides_files"]  # the emptyDir at /opt/mxnet-mnist hides mnist.py
    container(obj)["volumeMounts"] = [{"name": "data", "mountPath": "/opt/mxnet-mnist"}]
    assert "metrics_volume_conflict" in codes(obj)
    stdout_path = variant(metricsCollectorSpec={"source": {"fileSystemPath": {"path": "/x/m.log"}}})
    assert codes(stdout_path) == ["source_ignored"]
    prom = variant(metricsCollectorSpec={"collector": {"kind": "PrometheusMetric"}})
    assert codes(prom) == ["prometheus_no_katib_image"]
    semi = variant(objective={"type": "maximize", "objectiveMetricName": "a;b"})
    assert "metric_name_semicolon" in codes(semi)
    strategy = variant()
    strategy["spec"]["objective"]["metricStrategies"] = [{"name": "Train-accuracy", "value": "best"}]
    assert codes(strategy) == ["strategy_bad_value"]
    one_group = variant(metricsCollectorSpec={"source": {"filter": {"metricsFormat": [r"(?:\w+)=(\d+)\(x\)"]}}})
    assert "filter_groups" in codes(one_group)


def test_a_name_group_that_captures_the_name_gives_no_warning() -> None:
    obj = variant(metricsCollectorSpec={"source": {"filter": {"metricsFormat": [r"([\w/-]+)=(\S+)"]}}},
                  objective={"type": "maximize", "objectiveMetricName": "val/acc"})
    assert codes(obj) == []
    obj["spec"]["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"] = [r"(\w+)=(\S+)"]
    blocking = [f for f in pitfalls(experiment_from_object(obj)) if f.blocks_objective]
    assert [f.code for f in blocking] == ["name_never_captured"]


_BODY = st.from_regex(r"[abc.]([abc-]|\\d|\[\)\]|\\\)){0,5}[+*?]?", fullmatch=True)


@given(bodies=st.lists(_BODY, min_size=1, max_size=4), seps=st.lists(st.sampled_from(["=", ":", r"\(", "[(]", "x"]),
                                                                    min_size=4, max_size=4))
def test_capture_groups_finds_each_group_in_go_order(bodies: list[str], seps: list[str]) -> None:
    pattern = "".join(f"{sep}({body})" for sep, body in zip(seps, bodies, strict=False))
    nested = f"(?:{pattern})" + "(outer(inner))"
    assert capture_groups(nested) == [*bodies, "outer(inner)", "inner"]
    assert len(capture_groups(nested)) == re.compile(nested.replace(r"\d", "d")).groups


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", "check", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    push = tmp_path / "push.yaml"
    push.write_text(yaml.safe_dump(variant(metricsCollectorSpec={"collector": {"kind": "Push"}})))
    log = tmp_path / "train.log"
    log.write_text("loss=1\n")
    for args, message in [((str(push), str(log)), "collector.kind Push: the training reports its metrics itself"),
                          ((str(push),), None),
                          ((str(tmp_path / "none.yaml"),), "none.yaml: cannot read the Experiment file"),
                          (("examples/experiments/random.yaml", str(tmp_path / "missing.log")),
                           "missing.log: no such file or directory"),
                          (("examples/experiments/random.yaml", str(tmp_path)), "reads a file")]:
        done = cli(*args)
        if message is None:
            assert done.returncode == 0 and "kind Push collects in its own way" in done.stdout
            continue
        assert done.returncode == 2, done
        assert message in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr


def test_json_output_is_one_object_with_the_verdict() -> None:
    done = cli("examples/experiments/random.yaml", "--output", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"] is True and report["errors"] == [] and report["log"] is None
    assert report["collector"]["sidecar_args"][:2] == ["-m", "Validation-accuracy;Train-accuracy"]
    assert [m["name"] for m in report["metrics"]] == ["Validation-accuracy", "Train-accuracy"]


def _experiment_file(tmp_path: Path, collector: dict[str, Any], objective: dict[str, Any]) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(variant(metricsCollectorSpec=collector, objective=objective)))
    return path


def test_event_directory_log_with_a_tensorflow_event_experiment(tmp_path: Path) -> None:
    tensorboardx = pytest.importorskip("tensorboardX")
    logdir = tmp_path / "tb"
    writer = tensorboardx.SummaryWriter(str(logdir / "validation"))
    for step, value in enumerate((0.5, 0.75, 0.875)):
        writer.add_scalar("accuracy", value, step)
    writer.close()
    exp = _experiment_file(tmp_path, {"collector": {"kind": "TensorFlowEvent"},
                                      "source": {"fileSystemPath": {"path": "/logs/tb", "kind": "Directory"}}},
                           {"type": "maximize", "objectiveMetricName": "validation/accuracy",
                            "additionalMetricNames": ["train/accuracy"]})
    done = cli(str(exp), str(logdir), "--output", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], done.stdout
    metrics = {m["name"]: m for m in report["log"]["observation"]["metrics"]}
    assert metrics["validation/accuracy"]["max"] == "0.875"
    assert metrics["train/accuracy"]["latest"] == "unavailable"
    assert [d["metric"] for d in report["diagnosis"]] == ["train/accuracy"]


def test_exposition_log_with_a_prometheus_experiment(tmp_path: Path) -> None:
    exposition = tmp_path / "metrics.txt"
    exposition.write_text("# TYPE loss gauge\nloss 0.25\n# TYPE accuracy gauge\naccuracy{split=\"val\"} 0.9\n")
    exp = _experiment_file(tmp_path, {"collector": {"kind": "PrometheusMetric"}},
                           {"type": "minimize", "objectiveMetricName": "loss", "additionalMetricNames": ["accuracy"]})
    done = cli(str(exp), str(exposition))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: spec.metricsCollectorSpec.collector.kind: Katib ships no PrometheusMetric collector" in done.stdout
    assert "OK: the objective loss would be collected: 0.25 by min (1 value)" in done.stdout


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                   max_size=3), max_leaves=8)
_FIELDS = st.sampled_from(["objective", "metricsCollectorSpec", "trialTemplate", "parameters"])


@settings(max_examples=300, deadline=None)
@given(replacements=st.lists(st.tuples(_FIELDS, _JSON), max_size=3),
       inner=st.lists(st.tuples(st.sampled_from(["collector", "source", "trialSpec", "trialParameters",
                                                 "metricStrategies", "primaryContainerName"]), _JSON), max_size=3))
def test_any_shape_gives_findings_or_one_spec_error_never_a_crash(replacements: list[tuple[str, Any]],
                                                                  inner: list[tuple[str, Any]]) -> None:
    from katib_metrics.parsers.errors import SpecError
    from katib_metrics.parsers.trialtemplate import local_command

    obj = variant()
    for field, value in replacements:
        obj["spec"][field] = value
    for key, value in inner:
        for field in ("objective", "metricsCollectorSpec", "trialTemplate"):
            if isinstance(obj["spec"].get(field), dict):
                obj["spec"][field][key] = value
    try:
        exp = experiment_from_object(obj)
    except SpecError:
        return
    katib_errors(exp)
    pitfalls(exp)
    for attempt in (exp.spec, lambda: local_command(exp, {"lr": "1", "num-layers": "2", "optimizer": "x"}, "t")):
        with contextlib.suppress(SpecError):
            attempt()


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["command", "args", "env", "volumeMounts", "name"]), _JSON, max_size=4),
       containers=st.none() | _JSON)
def test_any_container_shape_never_crashes(fields: dict[str, Any], containers: Any) -> None:
    from katib_metrics.parsers.errors import SpecError
    from katib_metrics.parsers.trialtemplate import local_command

    obj = variant(metricsCollectorSpec={"collector": {"kind": "File"},
                                        "source": {"fileSystemPath": {"path": "/opt/mxnet-mnist/m.log"}}})
    container(obj).update(fields)
    if containers is not None:
        obj["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"] = containers
    exp = experiment_from_object(obj)
    katib_errors(exp)
    pitfalls(exp)
    with contextlib.suppress(SpecError):
        local_command(exp, {"lr": "1", "num-layers": "2", "optimizer": "x"}, "t")


def test_standard_input_is_checked_and_diagnosed() -> None:
    log = (ROOT / "examples" / "logs" / "keras.log").read_bytes()
    done = subprocess.run([sys.executable, "-m", "katib_metrics", "check",
                           "examples/experiments/keras-mnist.yaml#keras-mnist", "-"], input=log, cwd=ROOT,
                          capture_output=True, timeout=60)
    out = done.stdout.decode()
    assert done.returncode == 1
    assert "appears on 3 lines of standard input" in out and "(verified on the input: collects 3 values" in out


def test_a_large_log_is_checked_in_bounded_memory(tmp_path: Path) -> None:
    # 24 MiB of framework noise with a metric line every 1,000 lines; the child's peak RSS is measured by a
    # fresh interpreter that runs only it (RUSAGE_CHILDREN of this process would include other tests' children).
    noise = b"2026-01-05T10:00:00Z INFO     Epoch[3] Batch [100-200]\tSpeed: 51234.56 samples/sec\tworking\n"
    block = noise * 999 + b"2026-01-05T10:00:01Z INFO     Epoch[3] Validation-accuracy=0.912345\n"
    log = tmp_path / "big.log"
    with log.open("wb") as out:
        while out.tell() < 24 << 20:
            out.write(block)
    probe = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', 'katib_metrics', 'check', "
             f"'examples/experiments/random.yaml', {str(log)!r}], capture_output=True, text=True); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    status, peak_kib = map(int, done.stdout.split("\n", 1)[0].split())
    assert status == 0, done.stdout + done.stderr
    assert "Validation-accuracy  max       0.912345" in done.stdout
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"  # the sidecar's default limit; the log is 24 MiB
