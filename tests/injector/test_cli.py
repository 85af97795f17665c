"""`katib-metrics injector mutate` as a user runs it: real files, real process, exit statuses."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import jsonpatch
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "injector"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics.injector.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_mutate_prints_the_admitted_pod_and_the_patch_matches() -> None:
    files = ["--trial", str(EXAMPLES / "trial.yaml"), "--pod", str(EXAMPLES / "pod.yaml"),
             "--config", str(EXAMPLES / "katib-config.yaml")]
    result = run("mutate", *files)
    assert result.returncode == 0, result.stderr
    pod = yaml.safe_load(result.stdout)
    kubernetes_validate.validate(pod, "1.33.0", strict=True)
    assert pod["spec"]["containers"][-1]["name"] == "metrics-logger-and-collector"
    patch = run("mutate", *files, "--output", "patch")
    original = yaml.safe_load((EXAMPLES / "pod.yaml").read_text())
    assert jsonpatch.apply_patch(original, json.loads(patch.stdout)) == pod


def test_missing_file_is_a_usage_error_naming_it(tmp_path: pathlib.Path) -> None:
    result = run("mutate", "--trial", str(tmp_path / "nope.yaml"), "--pod", str(EXAMPLES / "pod.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_denied_pod_exits_1_with_the_reason(tmp_path: pathlib.Path) -> None:
    pod = yaml.safe_load((EXAMPLES / "pod.yaml").read_text())
    pod["spec"]["containers"][0]["name"] = "main"
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    result = run("mutate", "--trial", str(EXAMPLES / "trial.yaml"), "--pod", str(tmp_path / "pod.yaml"))
    assert result.returncode == 1
    assert "Unable to find primary container training-container" in result.stderr


def test_bad_config_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "config.yaml").write_text("runtime:\n  metricsCollectors:\n    - image: x\n")
    result = run("mutate", "--trial", str(EXAMPLES / "trial.yaml"), "--pod", str(EXAMPLES / "pod.yaml"),
                 "--config", str(tmp_path / "config.yaml"))
    assert result.returncode == 2
    assert "runtime.metricsCollectors[0]: `kind` is required" in result.stderr


def test_help_lists_both_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "mutate" in result.stdout and "serve" in result.stdout


EXPERIMENT = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "random"},
              "spec": {"algorithm": {"algorithmName": "random"}}}


def _files(tmp_path: pathlib.Path) -> dict[str, str]:
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    return {"trial": str(EXAMPLES / "trial.yaml"), "pod": str(EXAMPLES / "pod.yaml"),
            "config": str(EXAMPLES / "katib-config.yaml"), "experiment": str(tmp_path / "experiment.yaml")}


def test_each_input_of_the_wrong_kind_is_named_with_the_option_it_belongs_to(tmp_path: pathlib.Path) -> None:
    files = _files(tmp_path)
    mixups = [("trial", "experiment", "holds an Experiment, not a Trial: pass it as --experiment"),
              ("pod", "trial", "holds a Trial, not a Pod: pass it as --trial"),
              ("config", "experiment",
               "holds an Experiment, not a KatibConfig or a ConfigMap: pass it as --experiment"),
              ("experiment", "pod", "holds a Pod, not an Experiment or a Suggestion: pass it as --pod")]
    for option, given, message in mixups:
        chosen = {**files, option: files[given]}
        result = run("mutate", *[item for name, path in chosen.items() for item in (f"--{name}", path)])
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"katib-metrics injector mutate: error: --{option} {files[given]} {message}"]
    swapped = {**files, "trial": files["pod"], "pod": files["trial"]}
    result = run("mutate", *[item for name, path in swapped.items() for item in (f"--{name}", path)])
    assert "--trial" in result.stderr and "holds a Pod, not a Trial: pass it as --pod" in result.stderr
    result = run("mutate", *[item for name, path in files.items() for item in (f"--{name}", path)])
    assert result.returncode == 0, result.stderr


def test_the_injector_without_a_command_says_it_is_missing() -> None:
    result = run()
    assert result.returncode == 2
    assert "katib-metrics injector: error: missing command" in result.stderr
    assert "mutate" in result.stderr and "serve" in result.stderr and "Traceback" not in result.stderr
