"""The Dockerfile, .dockerignore and image entrypoint, checked without a container engine."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO
from tests.deploy.test_smoke_script import wait_for_listen_port

DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|[\w.+-]+-dev)\b")


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def logical_lines(text: str) -> list[str]:
    """Joins backslash continuations and drops comments and blank lines, as the Dockerfile frontend does."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return lines


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with ${ARG} in FROM resolved to its default."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))[1]


def test_parser_understands_continuations() -> None:
    _, parsed = parse("# c\nARG B=python:3.11-slim\nFROM ${B} AS x\nRUN a \\\n  # inner\n  && b\nUSER 1\n")
    assert [(s.base, s.name) for s in parsed] == [("python:3.11-slim", "x")]
    assert parsed[0].all("RUN") == ["a && b"]


def test_multi_stage_on_an_official_slim_python_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"(docker\.io/(library/)?)?python:3\.1[1-9][\w.-]*-slim[\w.-]*", stage.base), (
            stage.base
        )
    assert stages[-1].base == stages[0].base, "build and final stage should share the interpreter"


def test_final_stage_runs_as_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the final stage sets no USER, so it runs as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, "a numeric UID lets Kubernetes enforce runAsNonRoot"
    assert not group or (group.isdigit() and int(group) != 0)


def test_final_stage_has_no_compilers_and_installs_nothing(stages: list[Stage]) -> None:
    for run in stages[-1].all("RUN"):
        assert "pip install" not in run and "pip3 install" not in run, run
        installs = re.findall(r"apt-get install([^&;|]*)", run)
        for packages in installs:
            assert not COMPILERS.search(packages), f"compiler in the final stage: {packages}"
    for stage in stages:
        for run in stage.all("RUN"):
            for packages in re.findall(r"apt-get install([^&;|]*)", run):
                assert not COMPILERS.search(packages), f"compiler needed to build: {packages}"


def test_no_pip_cache_and_wheels_only(stages: list[Stage]) -> None:
    env = " ".join(stages[0].all("ENV"))
    assert "PIP_NO_CACHE_DIR=1" in env
    assert "PIP_ONLY_BINARY=:all:" in env, "dependencies must come as wheels (no compiler in the build)"


def test_final_stage_copies_only_the_virtualenv_from_the_build(stages: list[Stage]) -> None:
    build_names = {s.name for s in stages[:-1]}
    copies = stages[-1].all("COPY")
    from_build = [c for c in copies if c.startswith("--from=")]
    assert from_build == [f"--from={stages[0].name} /opt/katib-metrics /opt/katib-metrics"]
    assert stages[0].name in build_names
    assert "/opt/katib-metrics/bin" in " ".join(stages[-1].all("ENV"))


def test_entrypoint_is_the_script_in_exec_form(stages: list[Stage]) -> None:
    entrypoints = stages[-1].all("ENTRYPOINT")
    assert len(entrypoints) == 1
    argv = json.loads(entrypoints[0])
    assert argv == ["/usr/local/bin/katib-metrics-entrypoint"]
    assert not stages[-1].all("CMD"), "a CMD would be appended to Katib's sidecar args"
    copied = [c for c in stages[-1].all("COPY") if c.endswith(" " + argv[0])]
    assert len(copied) == 1 and "docker/entrypoint.sh" in copied[0] and "--chmod=0755" in copied[0]


def context_sources(stages: list[Stage]) -> list[str]:
    sources = []
    for stage in stages:
        for copy in stage.all("COPY"):
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            if copy.startswith("--from="):
                continue
            sources += words[:-1]
    return sources


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory covers what is inside."""
    excluded = False
    parts = path.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace("\0/", "(.*/)?").replace("\0", ".*")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_copy_needs_and_drops_the_rest(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in context_sources(stages):
        assert not dockerignore_excludes(
            source.rstrip("/") + "/x.py" if not Path(source).suffix else source, patterns
        ), f"COPY {source} but .dockerignore excludes it"
    for unwanted in (
        ".git/config",
        ".tools/bin/helm",
        "tests/deploy/test_chart.py",
        "charts/x/Chart.yaml",
        "parsers/__pycache__/model.cpython-311.pyc",
        "build/lib/x.py",
        "benchmarks/RESULTS.md",
    ):
        assert dockerignore_excludes(unwanted, patterns), f"{unwanted} would be sent to the build"


def test_copy_sources_exist_and_match_pyproject(stages: list[Stage]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    sources = context_sources(stages)
    assert project["project"]["readme"] in sources, "pip install . needs the readme pyproject.toml names"
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    copied_dirs = {s.rstrip("/").split("/")[-1] for s in sources}
    assert package_dirs <= copied_dirs, f"package folders not copied into the image: {package_dirs - copied_dirs}"
    for source in sources:
        if source != project["project"]["readme"]:  # the README is the lead's, checked by its own tests
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"


# --- the entrypoint, executed by a real sh with Katib's exact sidecar args

KATIB_FILE_ARGS = [
    "-t",
    "mnist-x7k2p",
    "-m",
    "accuracy;loss",
    "-o-type",
    "maximize",
    "-s-db",
    "katib-db-manager.kubeflow:6789",
    "-path",
    "/var/log/katib/metrics.log",
    "-f",
    r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)",
    "-format",
    "TEXT",
    "-stop-rule",
    "accuracy;0.5;less;2",
    "-s-earlystop",
    "exp-medianstop.ns:6788",
]
KATIB_TFEVENT_ARGS = [
    "-t",
    "tf-trial",
    "-m",
    "accuracy",
    "-o-type",
    "maximize",
    "-s-db",
    "katib-db-manager.kubeflow:6789",
    "-path",
    "/var/log/katib/tfevent/",
]
TFEVENT_LONG_ARGS = [
    "--trial_name",
    "t",
    "--metric_names",
    "loss",
    "--metrics_file_dir",
    "/log",
    "--poll_interval",
    "1",
]


def run_entrypoint(
    args: list[str], recorder_dir: Path | None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if recorder_dir is not None:
        env["KATIB_METRICS"] = str(recorder_dir / "katib-metrics")
    else:
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("KATIB_METRICS", None)
    return subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture()
def recorder(tmp_path: Path) -> Path:
    """A real executable standing in for katib-metrics: records the argv it was exec'd with, as JSON."""
    script = tmp_path / "katib-metrics"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    script.chmod(0o755)
    return tmp_path


def recorded(directory: Path) -> list[str]:
    argv: list[str] = json.loads((directory / "argv.json").read_text(encoding="utf-8"))
    return argv


@pytest.mark.parametrize(
    "args",
    [KATIB_FILE_ARGS, KATIB_TFEVENT_ARGS, TFEVENT_LONG_ARGS, ["--t=trial"]],
    ids=["file-collector", "tfevent-collector", "tfevent-long-names", "go-equals-form"],
)
def test_katib_sidecar_args_run_the_collector(recorder: Path, args: list[str]) -> None:
    result = run_entrypoint(args, recorder)
    assert result.returncode == 0, result.stderr
    assert recorded(recorder) == ["collect", *args]


@pytest.mark.parametrize(
    "args",
    [
        ["injector", "serve", "--listen=0.0.0.0:8443"],
        ["db-manager", "--listen", "0.0.0.0:6789"],
        ["parse", "-m", "loss", "-"],
        ["collect", "-t", "x"],
        ["run", "--", "python", "train.py"],
        ["--version"],
        ["--help"],
    ],
)
def test_subcommands_pass_through_unchanged(recorder: Path, args: list[str]) -> None:
    result = run_entrypoint(args, recorder)
    assert result.returncode == 0, result.stderr
    assert recorded(recorder) == args


def test_no_args_shows_help(recorder: Path) -> None:
    assert run_entrypoint([], recorder).returncode == 0
    assert recorded(recorder) == ["--help"]


def test_other_commands_are_executed(recorder: Path) -> None:
    result = run_entrypoint(["sh", "-c", 'printf "%s|" "$0" "$1"', "a b", "$c;d"], recorder)
    assert (result.returncode, result.stdout) == (0, "a b|$c;d|")
    assert not (recorder / "argv.json").exists()


def test_exit_status_is_the_commands(recorder: Path) -> None:
    assert run_entrypoint(["sh", "-c", "exit 7"], recorder).returncode == 7


def test_real_katib_metrics_version_through_the_entrypoint() -> None:
    result = run_entrypoint(["--version"], None)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"katib-metrics \d+\.\d+\.\d+\S*\n", result.stdout)


def test_real_collector_accepts_katib_args_through_the_entrypoint() -> None:
    pytest.importorskip(
        "katib_metrics.collector.cli", reason="the sidecar command (collector/cli.py) is not in this tree yet"
    )
    result = run_entrypoint([*KATIB_FILE_ARGS, "--help"], None)
    assert result.returncode == 0, result.stderr
    assert "-s-db" in result.stdout


def test_katib_args_through_the_entrypoint_report_to_a_real_db_manager(tmp_path: Path) -> None:
    """What Katib's webhook starts in a trial pod, run here: the sidecar reads a finished training's log and
    reports it to our db-manager over gRPC."""
    pytest.importorskip(
        "katib_metrics.collector.sidecar", reason="the sidecar (collector/sidecar.py) is not in this tree yet"
    )
    log_dir = tmp_path / "katib"
    log_dir.mkdir()
    (log_dir / "metrics.log").write_text("epoch 1 loss=0.9 accuracy=0.61\nepoch 2 loss=0.5 accuracy=0.8\n")
    (log_dir / "4242.pid").write_text("completed\n")  # the training already ended: `echo completed > $$.pid`
    database = tmp_path / "observations.db"
    argv = [
        sys.executable,
        "-m",
        "katib_metrics",
        "db-manager",
        "--listen",
        "127.0.0.1:0",
        "--db",
        str(database),
    ]
    db_manager = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for_listen_port(db_manager, time.monotonic() + 20)
        katib_args = [
            "-t",
            "mnist-trial",
            "-m",
            "loss;accuracy",
            "-o-type",
            "minimize",
            "-s-db",
            f"127.0.0.1:{port}",
            "-path",
            str(log_dir / "metrics.log"),
            "-format",
            "TEXT",
            "-w",
            "false",
        ]
        result = run_entrypoint(katib_args, None)
        assert result.returncode == 0, result.stderr
    finally:
        db_manager.terminate()
        db_manager.wait(timeout=10)
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT trial_name, metric_name, value FROM observation_logs ORDER BY id"
        ).fetchall()
    assert rows == [
        ("mnist-trial", "loss", "0.9"),
        ("mnist-trial", "accuracy", "0.61"),
        ("mnist-trial", "loss", "0.5"),
        ("mnist-trial", "accuracy", "0.8"),
    ]
