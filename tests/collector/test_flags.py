"""Katib's sidecar flag sets parse as Katib's images parse them; bad ones are usage errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from katib_metrics.collector.earlystop import Comparison
from katib_metrics.collector.flags import (
    HelpRequested,
    UsageError,
    go_parse_bool,
    parse_duration,
    parse_sidecar_flags,
    usage,
)
from katib_metrics.collector.settings import DEFAULT_MESH_PROXIES, Settings, StopRule, resolve_settings
from katib_metrics.parsers.model import CollectorSpec, FileFormat, ObjectiveType

STDOUT_ARGS = ["-t", "trial-1", "-m", "accuracy;loss", "-o-type", "maximize", "-s-db",
               "katib-db-manager.kubeflow:6789", "-path", "/var/log/katib/metrics.log", "-format", "TEXT"]


def settings(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return resolve_settings(parse_sidecar_flags(argv), env or {})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("0", 0.0), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5),
     ("10", 10.0), ("2.5", 2.5), ("100us", 1e-4), ("3µs", 3e-6), ("1h1m1s", 3661.0)],
)
def test_durations_take_go_syntax_or_plain_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1.s.", "abc", "1s2", "--1s"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="-p"):
        parse_duration(text, "p")


@pytest.mark.parametrize(("text", "value"), [("1", True), ("t", True), ("TRUE", True), ("True", True),
                                             ("0", False), ("F", False), ("false", False),
                                             ("tRuE", None), ("yes", None), ("", None)])
def test_go_parse_bool_knows_exactly_twelve_spellings(text: str, value: bool | None) -> None:
    assert go_parse_bool(text) is value


def test_katib_stdout_flag_set() -> None:
    got = settings(STDOUT_ARGS)
    assert got.trial_name == "trial-1"
    assert got.spec == CollectorSpec(("accuracy", "loss"), (), FileFormat.TEXT, ObjectiveType.MAXIMIZE)
    assert got.db_manager == "katib-db-manager.kubeflow:6789"
    assert got.path == Path("/var/log/katib/metrics.log")
    assert got.marker_dir == Path("/var/log/katib")
    assert (got.poll_interval, got.timeout, got.wait_all, got.echo) == (1.0, 0.0, True, False)
    assert got.mesh_proxies == DEFAULT_MESH_PROXIES
    assert got.warnings == ()


@pytest.mark.parametrize(
    "argv",
    [["-t=x", "-m=a", "-s-db=h:1", "-path=/l/m.log"],
     ["--t", "x", "--m", "a", "--s-db", "h:1", "--path", "/l/m.log"],
     ["--t=x", "--m=a", "--s-db=h:1", "--path=/l/m.log"]],
)
def test_go_flag_forms(argv: list[str]) -> None:
    got = settings(argv)
    assert (got.trial_name, got.spec.metric_names, got.db_manager, got.path) == ("x", ("a",), "h:1",
                                                                                  Path("/l/m.log"))


def test_file_json_kind_and_filters() -> None:
    got = settings(["-t", "x", "-m", "loss", "-s-db", "h:1", "-path", "/katib/m.json", "-format", "JSON"])
    assert got.kind is FileFormat.JSON
    text = settings(["-t", "x", "-m", "loss", "-s-db", "h:1", "-path", "/katib/m.log",
                     "-f", r"(\w+):\s*(\d+);{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"])
    assert text.spec.filters == (r"(\w+):\s*(\d+)",
                                 r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}")


def test_directory_means_tensorflow_events(tmp_path: Path) -> None:
    by_slash = settings(["-t", "x", "-m", "loss", "-s-db", "h:1", "-path", "/var/log/katib/tfevent/"])
    assert by_slash.kind is FileFormat.TFEVENT
    assert by_slash.marker_dir == Path("/var/log/katib/tfevent")
    by_dir = settings(["-t", "x", "-m", "loss", "-s-db", "h:1", "-path", str(tmp_path)])
    assert (by_dir.kind, by_dir.marker_dir) == (FileFormat.TFEVENT, tmp_path)


def test_tfevent_collector_long_names_and_integer_seconds() -> None:
    got = settings(["--trial_name", "x", "--metric_names", "accuracy;loss", "--metrics_file_dir", "/log",
                    "--db_manager_server_addr", "h:6789", "--objective_type", "minimize",
                    "--poll_interval", "2", "--timeout", "30", "--wait_all_processes", "False"])
    assert got.kind is FileFormat.TFEVENT
    assert (got.path, got.marker_dir) == (Path("/log"), Path("/log"))
    assert (got.poll_interval, got.timeout, got.wait_all) == (2.0, 30.0, False)
    assert got.spec.objective_type is ObjectiveType.MINIMIZE


def test_unknown_wait_all_is_false_with_a_warning() -> None:
    got = settings([*STDOUT_ARGS, "-w", "yes"])
    assert got.wait_all is False
    assert "'yes'" in got.warnings[0]


def test_stop_rules_and_earlystop_are_kept() -> None:
    got = settings([*STDOUT_ARGS, "-stop-rule", "accuracy;0.6;less;4", "-stop-rule", "loss;2;greater;0",
                    "-s-earlystop", "random-medianstop.ns:6788"])
    assert got.stop_rules == (StopRule("accuracy", "0.6", Comparison.LESS, 4),
                              StopRule("loss", "2", Comparison.GREATER, 0))
    assert got.earlystop == "random-medianstop.ns:6788"


def test_our_long_options() -> None:
    got = settings([*STDOUT_ARGS, "--metrics-port", "9090", "--metrics-address=127.0.0.1", "--echo",
                    "--report-timeout", "5m", "--regex-timeout", "250ms", "--mesh-proxies", "envoy,,x",
                    "--grace-period", "3"])
    assert (got.metrics_port, got.metrics_address, got.echo) == (9090, "127.0.0.1", True)
    assert (got.report_timeout, got.regex_timeout, got.grace_period) == (300.0, 0.25, 3.0)
    assert got.mesh_proxies == ("envoy", "x")


def test_trial_name_from_the_environment() -> None:
    assert settings(STDOUT_ARGS[2:], {"KATIB_TRIAL_NAME": "from-env"}).trial_name == "from-env"


@pytest.mark.parametrize(
    ("extra", "named"),
    [(["-nope", "1"], "-nope"),
     (["-p"], "-p"),
     (["-p", "0"], "-p"),
     (["-timeout", "-1s"], "-timeout"),
     (["-stop-rule", "a;1;less"], "Early Stopping rule"),
     (["-stop-rule", "a;1;less;x"], "startStep"),
     (["-f", "(unclosed"], "(unclosed"),
     (["-f", r"(\w+)=\d+"], "capture group"),
     (["-format", "XML"], "XML"),
     (["-s-db", "no-port"], "-s-db"),
     (["--metrics-port", "70000"], "--metrics-port"),
     (["--metrics-port", "x"], "--metrics-port"),
     (["--echo=maybe"], "--echo"),
     (["stray"], "stray"),
     (["--", "stray"], "stray")],
)
def test_usage_errors_name_the_problem(extra: list[str], named: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings([*STDOUT_ARGS, *extra])
    assert named in str(caught.value)


@pytest.mark.parametrize("drop", ["-t", "-m", "-s-db", "-path"])
def test_required_flags(drop: str) -> None:
    index = STDOUT_ARGS.index(drop)
    with pytest.raises(UsageError, match=drop):
        settings(STDOUT_ARGS[:index] + STDOUT_ARGS[index + 2:])


def test_help_lists_every_spelling() -> None:
    with pytest.raises(HelpRequested):
        parse_sidecar_flags(["-h"])
    text = usage("katib-metrics collect")
    for spelling in ("-t, --trial_name", "-s-db, --db_manager_server_addr", "-stop-rule", "--metrics-port",
                     "--echo", "--prometheus-url"):
        assert spelling in text
