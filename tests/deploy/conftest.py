"""Fixtures of the deployment tests: a real helm binary and a renderer for the chart."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "katib-metrics-injector"
RELEASE = "kmi"
NAMESPACE = "katib-metrics"

Manifest = dict[str, Any]


def _find_helm() -> Path | None:
    local = REPO / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("helm")
    return Path(found) if found else None


@dataclass
class Helm:
    """The real helm binary, with its cache/config/data homes in a temp dir so runs never touch ~/.config."""

    binary: Path
    env: dict[str, str]
    durations: list[float] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=30, check=False
        )
        self.durations.append(time.monotonic() - started)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def template_args(self, values: Path | None, kube_version: str, *extra: str) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version]
        if values is not None:
            args += ["--values", str(values)]
        return args + list(extra)

    def render(self, values: Path | None, kube_version: str = "1.29.0") -> list[Manifest]:
        out = self.run(*self.template_args(values, kube_version)).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    binary = _find_helm()
    if binary is None:
        # scripts/test runs scripts/get-helm first; this covers a bare `pytest` on a fresh machine.
        fetched = subprocess.run(
            [str(REPO / "scripts" / "get-helm")], capture_output=True, text=True, timeout=300, check=False
        )
        if fetched.returncode != 0:
            pytest.fail(f"no helm binary and scripts/get-helm failed:\n{fetched.stderr}")
        binary = Path(fetched.stdout.strip().splitlines()[-1])
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    yield Helm(binary, env)


def write_values(directory: Path, name: str, values: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path
