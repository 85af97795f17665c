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
