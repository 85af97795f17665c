"""The chart's exact `injector serve` arguments, env and katib-config start the real injector."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import Helm, Manifest, write_values
from tests.deploy.test_smoke_script import KUBECONFIG, wait_for_listen_port, write_pki

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "bootstrap": {"certificates": {"mode": "bootstrap"}},
    "secret": {"certificates": {"mode": "secret", "secret": {"name": "tls", "caBundle": "QUJD"}}},
    "katib-config-from-api": {"katibConfig": {"source": "katib"}},
    "sidecar-options": {
        "sidecar": {"native": True, "metricsPort": 9464, "restrictedSecurityContext": False},
    },
}
BOOTSTRAP_FLAGS = ("--cert-bootstrap-secret", "--webhook-config")


def serve_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "katib_metrics", "injector", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout


def local_args(container: Manifest, objects: list[Manifest], files: dict[str, Path]) -> list[str]:
    """The container's args with in-pod paths and addresses swapped for local ones; nothing else changes."""
    config_maps = [o for o in objects if o["kind"] == "ConfigMap" and "annotations" not in o["metadata"]]
    args = []
    for arg in container["args"]:
        flag, _, _ = arg.partition("=")
        if flag in ("--listen", "--metrics-listen"):
            arg = f"{flag}=127.0.0.1:0"
        elif flag in ("--tls-cert-file", "--tls-key-file"):
            arg = f"{flag}={files['cert' if flag == '--tls-cert-file' else 'key']}"
        elif flag == "--katib-config":
            (config,) = config_maps
            files["config"].write_text(config["data"]["katib-config.yaml"], encoding="utf-8")
            arg = f"{flag}={files['config']}"
        args.append(arg)
    return [*args, f"--kubeconfig={files['kubeconfig']}"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_args_start_the_real_injector(helm: Helm, tmp_path: Path, scenario: str) -> None:
    pytest.importorskip("katib_metrics.injector.serve_cli", reason="`injector serve` is not in this tree")
    if scenario == "bootstrap" and not all(flag in serve_help() for flag in BOOTSTRAP_FLAGS):
        pytest.skip(
            "`injector serve` has no certificate bootstrap options (--cert-bootstrap-secret, "
            "--webhook-config) yet: the chart's bootstrap mode cannot start until it does"
        )
    objects = helm.render(write_values(tmp_path, scenario, SCENARIOS[scenario]))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    files = write_pki(tmp_path)
    files |= {"config": tmp_path / "katib-config.yaml", "kubeconfig": tmp_path / "kubeconfig"}
    files["kubeconfig"].write_text(KUBECONFIG, encoding="utf-8")
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
    assert container["command"] == ["katib-metrics"]
    argv = [sys.executable, "-m", "katib_metrics", *local_args(container, objects, files)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_for_listen_port(process, time.monotonic() + 20) > 0
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=10)
