"""`katib-metrics injector mutate` as a user runs it: real files, real process, exit statuses."""

from __future__ import annotations

import json
import pathlib
import re
import socket
import subprocess
import sys

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from katib_metrics.injector.certs import issue_certificates
from katib_metrics.injector.cli import UsageError, _parser, sidecar_options
from katib_metrics.injector.errors import ConfigError
from katib_metrics.injector.serve_cli import limits_from, registry_client, settings_from

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


def _serve_files(tmp_path: pathlib.Path) -> list[str]:
    issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(issued.cert_pem)
    (tmp_path / "tls.key").write_bytes(issued.key_pem)
    (tmp_path / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}]}))
    return ["serve", "--listen", "127.0.0.1:0", "--tls-cert-file", str(tmp_path / "tls.crt"), "--tls-key-file",
            str(tmp_path / "tls.key"), "--kubeconfig", str(tmp_path / "kubeconfig"),
            "--katib-config", str(EXAMPLES / "katib-config.yaml")]


@pytest.mark.parametrize(("args", "named"), [
    (["--api-timeout", "nan"], "--api-timeout must be a positive number of seconds, got nan"),
    (["--registry-timeout", "inf"], "--registry-timeout must be a positive number of seconds, got inf"),
    (["--request-timeout", "-1"], "--request-timeout must be a positive number of seconds, got -1"),
    (["--max-connections", "0"], "--max-connections must be at least 1, got 0"),
    (["--body-budget", "1"], "--body-budget must be at least 4 MiB"),
    (["--katib-namespace", "Kube_flow"], "--katib-namespace 'Kube_flow' is not a namespace name"),
    (["--insecure-registry", "a b"], "--insecure-registry 'a b' is not HOST[:PORT]"),
    (["--allow-local-registry", ""], "--allow-local-registry '' is not HOST[:PORT]"),
    (["--db-manager-address", "nope"], "--db-manager-address 'nope' is not HOST:PORT"),
])
def test_serve_option_values_are_checked(tmp_path: pathlib.Path, args: list[str], named: str) -> None:
    """The checks `serve` makes before it loads anything (in process: nothing is started)."""
    parsed = _parser("katib-metrics injector").parse_args([*_serve_files(tmp_path), *args])
    with pytest.raises((ConfigError, UsageError), match=re.escape(named)):
        settings_from(parsed, {})
        limits_from(parsed)
        registry_client(parsed)
        sidecar_options(parsed, {})


@pytest.mark.parametrize(("args", "named"), [
    (["--tls-key-file", "/etc/hostname"], "cannot load the serving certificate"),
    (["--listen", "127.0.0.1:BUSY"], "--listen: cannot listen on 127.0.0.1:"),
])
def test_serve_refuses_what_it_cannot_load_or_bind_before_serving(tmp_path: pathlib.Path, args: list[str],
                                                                  named: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        result = run(*_serve_files(tmp_path), *[arg.replace("BUSY", port) for arg in args])
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and named in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr
