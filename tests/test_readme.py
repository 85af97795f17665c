"""Every example in README.md is executed: shell blocks in a real shell, Python blocks in-process."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(sh|python)\n(.*?)```", README, flags=re.S)
SHELL = [body.strip() for kind, body in BLOCKS if kind == "sh"]
PYTHON = [body for kind, body in BLOCKS if kind == "python"]
SETUP, TESTS = SHELL[0], SHELL[1]


def _run(command: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "PATH": f"{pathlib.Path(sys.executable).parent}"
           f"{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_readme_has_the_two_set_up_commands() -> None:
    assert SETUP.startswith("python3 -m pip install -e '.[collector]' && katib-metrics run ")
    assert TESTS == "scripts/test"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test" in ci, ".ci/run must call the README's test command"


def test_setup_installs_an_existing_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    extra = re.search(r"\.\[(\w+)\]", SETUP)
    assert extra is not None and extra.group(1) in extras


def test_main_job_runs_a_local_trial_and_prints_the_table(tmp_path: pathlib.Path) -> None:
    # The install half is what a fresh machine runs first; here the package is already installed.
    command = SETUP.split(" && ", 1)[1]
    result = _run(command, tmp_path)
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("metric ")[-1]
    assert "accuracy" in table and "loss" in table
    assert "rows stored" in result.stdout + result.stderr


@pytest.mark.parametrize("command", SHELL[2:], ids=[shlex.split(c)[1] + "-" + str(i) for i, c in enumerate(SHELL[2:])])
def test_shell_example_runs(command: str, tmp_path: pathlib.Path) -> None:
    result = _run(command, tmp_path)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), "an example that prints nothing shows nothing"


def test_parse_example_output_is_what_the_readme_shows(tmp_path: pathlib.Path) -> None:
    shown = re.search(r"```\n(METRIC.*?)```", README, flags=re.S)
    assert shown is not None
    result = _run(SHELL[2], tmp_path)
    assert result.stdout == shown.group(1)


@pytest.mark.parametrize("code", PYTHON)
def test_python_example_runs(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README's example
