"""Help texts name their literal values, and every command's usage errors start `katib-metrics CMD: error:`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from katib_metrics.collector.cli import collect_main, run_main
from katib_metrics.parsers.install import install_command

ROOT = Path(__file__).resolve().parents[2]


def test_collect_help_names_formats_wait_and_spill(capsys: pytest.CaptureFixture[str]) -> None:
    assert collect_main(["--help"], "katib-metrics collect") == 0
    out = capsys.readouterr().out
    fmt = out.split("-format string\n", 1)[1].splitlines()[0]
    assert "TEXT" in fmt and "JSON" in fmt
    wait = out.split("--wait_all_processes string\n", 1)[1].splitlines()[0]
    assert "true" in wait and "false" in wait
    spill = out.split("--spill-dir string\n", 1)[1].splitlines()[0]
    assert "10,000" in spill and "default" in spill


def test_run_help_lists_the_stop_rule_comparisons(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_main(["--help"], "katib-metrics run")
    out = " ".join(capsys.readouterr().out.split())
    rule = out.split("--stop-rule RULE", 1)[1].split("--stop-grace", 1)[0]
    assert all(word in rule for word in ("less", "greater", "equal"))


@pytest.mark.parametrize("argv", [
    ["parse", "/nonexistent"], ["run"], ["run", "--bogus", "--", "true"], ["collect"], ["db-manager", "--bogus"],
    ["trials", "--db", "/nonexistent/x.db"], ["show"], ["show", "t", "--db", "/nonexistent/x.db"],
    ["injector", "mutate"], ["bogus"],
])
def test_usage_errors_share_one_prefix(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "katib_metrics", *argv], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    prefix = "katib-metrics: error: " if argv[0] == "bogus" else f"katib-metrics {argv[0]}"
    assert len(errors) == 1 and errors[0].startswith(prefix), done.stderr


def test_the_install_hint_works_from_where_the_user_is(tmp_path: Path) -> None:
    assert install_command("all", cwd=ROOT) == "pip install -e '.[all]'"  # this checkout
    assert install_command("plot", cwd=tmp_path) == f"pip install -e '{ROOT}[plot]'"


def test_a_missing_extra_names_a_working_install_command(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from katib_metrics import cli

    monkeypatch.setitem(cli.COMMANDS, "show", ("katib_metrics_not_installed", "main", "stands for a missing extra"))
    assert cli.main(["show"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("katib-metrics show: error: this command needs katib_metrics_not_installed")
    assert err.endswith(install_command("all")) and "\n" not in err
