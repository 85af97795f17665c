"""Every example in README.md is executed: shell blocks in a real shell, Python blocks in-process.

The shell examples run in README order in one temporary directory of their own (with the checkout's
`examples/` linked in), so their relative paths (`--db katib-demo.db`) touch nothing shared on the machine.
"""

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


Examples = tuple[pathlib.Path, dict[str, subprocess.CompletedProcess[str]]]


def _workdir(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def _run(command: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(cwd / "data"), "PATH": f"{pathlib.Path(sys.executable).parent}"
           f"{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def examples_in_order(tmp_path_factory: pytest.TempPathFactory) -> Examples:
    """Each shell example after those before it (a later one may read what an earlier one stored)."""
    cwd = _workdir(tmp_path_factory.mktemp("readme"))
    return cwd, {command: _run(command, cwd) for command in SHELL[2:]}


def test_readme_has_the_two_set_up_commands() -> None:
    assert SETUP.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[")
    assert "&& katib-metrics run " in SETUP and "\n" not in SETUP  # one line a user pastes
    assert TESTS == "scripts/test"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test" in ci, ".ci/run must call the README's test command"


def test_setup_installs_existing_extras_covering_every_example() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    chosen = re.search(r"\.\[([\w,]+)\]", SETUP)
    assert chosen is not None and set(chosen.group(1).split(",")) <= set(extras)
    installed = {name for extra in chosen.group(1).split(",") for name in _closure(extras, extra)}
    assert {"collector", "injector", "plot"} <= installed  # run, injector mutate, show --plot


def _closure(extras: dict[str, list[str]], extra: str) -> set[str]:
    found = {extra}
    for requirement in extras[extra]:
        if inner := re.fullmatch(r"katib-metrics-collector\[([\w,]+)\]", requirement):
            for name in inner.group(1).split(","):
                found |= _closure(extras, name)
    return found


def test_shell_examples_use_no_shared_absolute_paths() -> None:
    assert not [command for command in SHELL if "/tmp" in command]


def test_main_job_runs_a_local_trial_and_prints_the_table(tmp_path: pathlib.Path) -> None:
    # The install part is what a fresh machine runs first; here the package is already installed.
    command = SETUP[SETUP.index("katib-metrics run "):]
    result = _run(command, _workdir(tmp_path))
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("\nMETRIC ")[-1]
    assert "accuracy" in table and "loss" in table
    assert "rows stored" in result.stdout + result.stderr


@pytest.mark.parametrize("command", SHELL[2:], ids=[shlex.split(c)[1] + "-" + str(i) for i, c in enumerate(SHELL[2:])])
def test_shell_example_runs(command: str, examples_in_order: Examples) -> None:
    cwd, results = examples_in_order
    result = results[command]
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), "an example that prints nothing shows nothing"
    if "--plot" in command:  # the image is written in the examples' own directory and decodes
        image = pytest.importorskip("PIL.Image")
        with image.open(cwd / shlex.split(command.split("--plot", 1)[1])[0]) as plot:
            plot.load()
            assert plot.format == "PNG" and plot.size[0] > 0


def test_parse_example_output_is_what_the_readme_shows(tmp_path: pathlib.Path) -> None:
    shown = re.search(r"```\n(METRIC.*?)```", README, flags=re.S)
    assert shown is not None
    result = _run(SHELL[2], _workdir(tmp_path))
    assert result.stdout == shown.group(1)


@pytest.mark.parametrize("code", PYTHON)
def test_python_example_runs(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {})
