"""Push mode in a training image: a fresh virtualenv with only `[push]` installed reports to a real db-manager.

Installs from the package index pip is configured with here (the same one the project's own install uses);
skipped, saying why, when no index can be reached. Also checks the README's size figure against `du -sm`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("parsers", "collector", "injector", "katib_metrics", "pyproject.toml", "README.md")
HEAVY = ("watchdog", "psutil", "prometheus_client", "platformdirs", "lightkube", "cryptography", "google_crc32c")
OFFLINE = re.compile(r"Could not find a version|No matching distribution|NewConnectionError|Network is unreachable|"
                     r"Temporary failure in name resolution|Max retries exceeded|ProxyError|timed out", re.I)

PROBE = textwrap.dedent(f"""
    import json, sys
    import katib_metrics
    from katib_metrics import MetricsReporter, report_metrics
    report_metrics({{"accuracy": 0.91, "loss": 0.25}})
    with MetricsReporter() as reporter:
        for step in range(1000):
            reporter.report({{"step_loss": 1 / (step + 1)}})
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    print(json.dumps({{"heavy": heavy, "file": katib_metrics.__file__}}))
""")


def megabytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path / 'dist')!r}))"
    done = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path / "dist" / done.stdout.strip().splitlines()[-1]


def readme_figure() -> int:
    found = re.search(r"`pip install 'katib-metrics-collector\[push\]'` adds\s+about\s+(\d+)\s+MB",
                      (ROOT / "README.md").read_text())
    assert found, "the README's Push mode section states what the push extra installs, in MB"
    return int(found.group(1))


def test_only_the_push_extra_in_a_fresh_venv_reports_to_a_real_db_manager(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    before = megabytes(venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--timeout", "60", "--retries", "2",
                              f"{wheel}[push]"], capture_output=True, text=True, timeout=600, env=env)
    if install.returncode != 0 and OFFLINE.search(install.stdout + install.stderr):
        pytest.skip("no package index reachable to install grpcio and protobuf: "
                    + (install.stderr.strip().splitlines() or ["?"])[-1])
    assert install.returncode == 0, install.stderr[-3000:]
    added = megabytes(venv) - before
    assert abs(added - readme_figure()) <= 8, f"the push extra adds {added} MB; the README says {readme_figure()}"
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True, env=env).stdout
    names = {item["name"].lower().replace("_", "-") for item in json.loads(listed)}
    assert {"grpcio", "protobuf", "katib-metrics-collector"} <= names
    assert not names & {"watchdog", "psutil", "prometheus-client", "platformdirs", "lightkube", "cryptography"}

    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    try:
        push_env = {**env, "KATIB_TRIAL_NAME": "venv-trial", "KATIB_DB_MANAGER_ADDRESS": server.address}
        probe = subprocess.run([str(python), "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                               env=push_env)
        assert probe.returncode == 0, probe.stderr
        rows = get_observation_log(server.address, "venv-trial")
    finally:
        server.stop(grace=1)
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["file"].startswith(str(venv))
    assert sorted({row.name for row in rows}) == ["accuracy", "loss", "step_loss"] and len(rows) == 1002
