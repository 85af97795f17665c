"""The pytest plugin as a training project uses it: a real pytest session (pytester) with the entry point loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from katib_metrics.testing import MetricsNotCollected, assert_collected, collect, collect_text, run_training

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
KERAS = ROOT / "examples" / "logs" / "keras.log"
EXPERIMENT = {
    "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "keras"},
    "spec": {
        "objective": {"type": "maximize", "objectiveMetricName": "val_accuracy", "additionalMetricNames": ["loss"]},
        "metricsCollectorSpec": {
            "collector": {"kind": "StdOut"},
            "source": {"filter": {"metricsFormat": [r"([\w-]+):\s*([+-]?\d*\.?\d+(?:[eE][+-]?\d+)?)"]}},
        },
    },
}


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    assert any(e.value == "katib_metrics.pytest_plugin" for e in entry_points(group="pytest11"))


def test_loading_the_plugin_imports_nothing_of_the_toolkit() -> None:
    """Every pytest session where the package is installed loads the plugin: it must cost nothing."""
    probe = "import sys, katib_metrics.pytest_plugin; print(sorted(m for m in sys.modules if m.startswith('katib'))"
    done = subprocess.run([sys.executable, "-c", probe + ")"], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["['katib_metrics',", "'katib_metrics.pytest_plugin']"]


def test_the_fixture_collects_a_log_and_runs_a_training(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import sys

        def test_log(katib_metrics):
            observation = katib_metrics.collect({str(KERAS)!r}, ["val_accuracy"], filters=[r"([\\w-]+):\\s*([\\d.]+)"])
            katib_metrics.assert_collected(observation, "val_accuracy", at_least=3)
            assert observation.value("val_accuracy") == 0.9712

        def test_training(katib_metrics):
            command = [sys.executable, "-c", "for e in range(3): print(f'epoch={{e}} loss={{1 / (e + 1)}}')"]
            observation = katib_metrics.run(command, ["loss"], objective_type="minimize")
            assert observation.returncode == 0
            assert observation.values("loss") == [1.0, 0.5, 1 / 3]
            assert observation.value("loss") == 1 / 3  # strategy min, as Katib's controller takes it
    """)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_failed_assertion_is_the_diagnosis(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        def test_objective_is_collected(katib_metrics):
            katib_metrics.assert_collected(katib_metrics.collect({str(KERAS)!r}, ["val_accuracy"]))
    """)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*MetricsNotCollected: expected at least 1 value(s) from *keras.log, got val_accuracy: 0 values",
        "*val_accuracy: 'val_accuracy' appears on 3 lines of *keras.log that Katib's default filter*",
        "*try: -f '(*)'   (verified on the input: collects 3 values of val_accuracy)",  # fnmatch: no [...]
    ])
    assert "testing.py:" not in result.stdout.str()  # the failure points at the test, not into the helper


def test_an_experiment_gives_the_spec(pytester: pytest.Pytester) -> None:
    (pytester.path / "experiment.json").write_text(json.dumps(EXPERIMENT))
    pytester.makepyfile(f"""
        def test_experiment(katib_metrics):
            observation = katib_metrics.collect({str(KERAS)!r}, experiment="experiment.json")
            assert observation.spec.metric_names == ("val_accuracy", "loss")
            katib_metrics.assert_collected(observation)
            assert observation.value("val_accuracy") == 0.9712  # maximize: strategy max
    """)
    pytester.runpytest("-q", "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_library_api_collects_text_files_and_commands(tmp_path: Path) -> None:
    text = collect_text('{"loss": 0.5}\n{"loss": 0.25}\n', ["loss"], format="json", objective_type="minimize")
    assert text.count("loss") == 2 and text.value("loss") == 0.25 and text.diagnosis == ()
    missing = collect(KERAS, ["Validation-accuracy"])
    assert missing["Validation-accuracy"].count == 0 and missing.value("Validation-accuracy") is None
    assert [d.cause for d in missing.diagnosis] == ["similar_names"]
    with pytest.raises(MetricsNotCollected, match="similar_names"):
        assert_collected(missing)
    with pytest.raises(KeyError, match="collected: Validation-accuracy"):
        missing["accuracy"]
    written = tmp_path / "metrics.log"
    ran = run_training([sys.executable, "-c", f"open({str(written)!r}, 'w').write('accuracy=0.5\\n')"],
                       ["accuracy"], path=written)
    assert ran.returncode == 0 and ran.values("accuracy") == [0.5]
