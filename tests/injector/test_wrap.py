"""The wrapped training command, executed in a real `sh` after kubelet's $(VAR) expansion."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.injector.wrap import WrapSpec, escape_for_kubelet, kubelet_expand, wrap_command

ENV = {"FOO": "bar baz", "EMPTY": ""}

# The "training": reports its argv as one JSON line, writes to stderr, reports whether it is its parent's only
# child (Katib's early stopping needs exactly one), then exits as told by $EXIT_WITH.
TRAINING = textwrap.dedent("""
    import json, os, pathlib, signal, sys
    parent = os.getppid()
    children = []
    for task in pathlib.Path(f"/proc/{parent}/task").iterdir():
        children += (task / "children").read_text().split()
    print(json.dumps({"argv": sys.argv[1:], "only_child": children == [str(os.getpid())]}), flush=True)
    print("to-stderr", file=sys.stderr, flush=True)
    mode = os.environ.get("EXIT_WITH", "0")
    if mode == "early-stop":
        (pathlib.Path(os.environ["MARKER_DIR"]) / f"{parent}.pid").write_text("early-stopped")
        os.kill(os.getpid(), signal.SIGTERM)
    sys.exit(int(mode))
""")


def run_wrapped(argv: list[str], tmp: pathlib.Path, *, stdout_kind: bool = True, early: bool = False,
                exit_with: str = "0") -> tuple[subprocess.CompletedProcess[str], int]:
    spec = WrapSpec(marker_dir=str(tmp), metrics_file=str(tmp / "metrics.log") if stdout_kind else None,
                    early_stopping=early)
    command, args = wrap_command(argv, spec)
    expanded = [kubelet_expand(part, ENV) for part in [*command, *args]]
    env = {**os.environ, **ENV, "EXIT_WITH": exit_with, "MARKER_DIR": str(tmp)}
    with subprocess.Popen(expanded, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL) as proc:
        out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(expanded, proc.returncode, out, err), proc.pid


@pytest.fixture
def training(tmp_path: pathlib.Path) -> list[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    return [sys.executable, str(script)]


def marker(tmp: pathlib.Path, pid: int) -> str | None:
    path = tmp / f"{pid}.pid"
    return path.read_text().strip() if path.exists() else None


HARD_ARGS = ["with space", "it's", 'say "hi"', "$HOME", "$(echo injected)", "a;b", "x && y", "p|q", "&",
             "line1\nline2", "back\\slash", "*", "", "--lr=$(FOO)", "$$literal", "tab\there", "`id`", "'", "~"]


def test_argv_survives_exactly_and_output_reaches_both_places(training: list[str], tmp_path: pathlib.Path) -> None:
    argv = [*training, *HARD_ARGS]
    result, pid = run_wrapped(argv, tmp_path)
    assert result.returncode == 0, result.stderr
    expected = [kubelet_expand(a, ENV) for a in HARD_ARGS]  # what the training sees without injection
    seen = json.loads(result.stdout.splitlines()[0])
    assert seen == {"argv": expected, "only_child": True}
    assert "to-stderr" in result.stdout  # Katib's 2>&1, and still in the container log
    logged = (tmp_path / "metrics.log").read_text()
    assert logged.splitlines() == result.stdout.splitlines()[:2]
    assert marker(tmp_path, pid) == "completed"


def test_kubelet_expansion_of_user_args_is_preserved(training: list[str], tmp_path: pathlib.Path) -> None:
    result, _ = run_wrapped([*training, "$(FOO)", "$(UNDEFINED)", "$$(FOO)", "$(EMPTY)"], tmp_path)
    assert json.loads(result.stdout.splitlines()[0])["argv"] == ["bar baz", "$(UNDEFINED)", "$(FOO)", ""]


@pytest.mark.parametrize("stdout_kind", [True, False], ids=["StdOut", "File"])
def test_failure_keeps_exit_status_and_writes_no_marker(training: list[str], tmp_path: pathlib.Path,
                                                         stdout_kind: bool) -> None:
    result, pid = run_wrapped(training, tmp_path, stdout_kind=stdout_kind, exit_with="3")
    assert result.returncode == 3
    assert marker(tmp_path, pid) is None


def test_failure_with_early_stopping_rules_keeps_status(training: list[str], tmp_path: pathlib.Path) -> None:
    result, pid = run_wrapped(training, tmp_path, early=True, exit_with="7")
    assert result.returncode == 7
    assert "Training Container was Failed" in result.stdout
    assert marker(tmp_path, pid) is None


def test_early_stopped_training_exits_zero_and_ends_completed(training: list[str], tmp_path: pathlib.Path) -> None:
    result, pid = run_wrapped(training, tmp_path, early=True, exit_with="early-stop")
    assert result.returncode == 0
    assert "Training Container was Early Stopped" in result.stdout
    assert marker(tmp_path, pid) == "completed"


def test_file_kind_does_not_capture_output(training: list[str], tmp_path: pathlib.Path) -> None:
    result, pid = run_wrapped(training, tmp_path, stdout_kind=False)
    assert result.returncode == 0
    assert "to-stderr" in result.stderr
    assert not (tmp_path / "metrics.log").exists()
    assert marker(tmp_path, pid) == "completed"


def test_shell_form_commands_run_as_written(tmp_path: pathlib.Path) -> None:
    script = 'cd / && echo "one $1" ; echo two >&2; test "$0" = myname'
    result, pid = run_wrapped(["sh", "-c", script, "myname", "a b"], tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == ["one a b", "two"]
    assert (tmp_path / "metrics.log").read_text().splitlines() == ["one a b", "two"]
    assert marker(tmp_path, pid) == "completed"


def test_missing_command_fails_like_without_injection(tmp_path: pathlib.Path) -> None:
    result, pid = run_wrapped(["python main.py"], tmp_path)
    assert result.returncode == 127
    assert marker(tmp_path, pid) is None


def test_katib_marker_text_is_in_the_shells_command_line(tmp_path: pathlib.Path) -> None:
    command, args = wrap_command(["true"], WrapSpec(marker_dir="/var/log/katib", metrics_file="/var/log/katib/m"))
    assert command == ["sh", "-c"]
    assert "echo completed > /var/log/katib/$$$$.pid" in args[0]
    assert "echo completed > /var/log/katib/$$.pid" in kubelet_expand(args[0], {})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])), max_size=4))
def test_any_argv_survives(tmp_path_factory: pytest.TempPathFactory, words: list[str]) -> None:
    tmp = tmp_path_factory.mktemp("wrap")
    spec = WrapSpec(marker_dir=str(tmp), metrics_file=str(tmp / "metrics.log"))
    command, args = wrap_command(["sh", "-c", 'for a in "$@"; do printf "%s\\0" "$a"; done', "argv", *words], spec)
    expanded = [kubelet_expand(part, ENV) for part in [*command, *args]]
    with subprocess.Popen(expanded, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    seen = [w.decode("utf-8", "surrogateescape") for w in out.split(b"\0")[:-1]]
    assert seen == [kubelet_expand(w, ENV) for w in words]
    assert marker(tmp, proc.pid) == "completed"


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("$$", {}, "$"), ("$$$$.pid", {}, "$$.pid"), ("$(A)", {"A": "x"}, "x"), ("$(B)", {}, "$(B)"),
    ("$(head -n 1 /d/$$.pid)", {}, "$(head -n 1 /d/$$.pid)"), ("$(A", {"A": "x"}, "$(A"), ("a$", {}, "a$"),
    ("$x$(A)", {"A": "1"}, "$x1"), ("$$$", {}, "$$"), ("$(A)$(A)", {"A": "$(A)"}, "$(A)$(A)"), ("", {}, ""),
    ("$é", {}, "$\u00c3\udca9"),  # Go re-encodes the byte after a lone `$` as a code point
])
def test_kubelet_expand_rules(text: str, env: dict[str, str], expected: str) -> None:
    assert kubelet_expand(text, env) == expected


@given(st.text())
def test_escape_round_trips_through_kubelet(text: str) -> None:
    assert kubelet_expand(escape_for_kubelet(text), {"A": "x"}) == text
