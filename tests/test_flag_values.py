"""Every bad flag value is a usage error: exit 2, one line naming the value, no traceback, nothing started."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from katib_metrics.collector.flags import FLAGS, HelpRequested, UsageError, parse_sidecar_flags
from katib_metrics.collector.settings import check_address, resolve_settings

BASE = {"t": "t1", "m": "loss", "s-db": "127.0.0.1:6789", "path": "/tmp/metrics.log"}
ODD_VALUES = st.sampled_from([
    "", "0", "-1", "99999", "1e309", "nan", "inf", "-0", "1s", "[::1]:0", "::", "a;b;;", "http://",
    "http://h:1/x", "{", "acc{", 'acc{a="1"', "TEXT", "json", "localhost:9/metrics", "\x00", "1e-400s",
    "9999999999999999999h", "http://localhost:99999/metrics", "[::1:6789", "host:1:2",
])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", *args], capture_output=True, text=True,
                          timeout=60, check=False)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([name for flag in FLAGS for name in flag.names]), st.one_of(st.text(max_size=12), ODD_VALUES),
       st.booleans())
def test_any_collect_flag_value_is_accepted_or_a_usage_error(name: str, value: str, prometheus: bool) -> None:
    args = dict(BASE)
    if prometheus:
        args["prometheus-url"] = "http://localhost:8080/metrics"
    args[name] = value
    with contextlib.suppress(UsageError, HelpRequested):
        resolve_settings(parse_sidecar_flags([item for key, val in args.items() for item in (f"-{key}", val)]), {})


@pytest.mark.parametrize("address", ["[::1:6789", "host:6789:1", "::1:6789", "a b:1", "h/x:1", "[h]:1", "h:0"])
def test_malformed_db_manager_addresses_are_refused(address: str) -> None:
    with pytest.raises(UsageError, match="want HOST:PORT"):
        check_address(address, "-s-db")


@pytest.mark.parametrize("address", ["[::1]:6789", "katib-db-manager.kubeflow:6789", "127.0.0.1:1"])
def test_well_formed_addresses_pass(address: str) -> None:
    assert check_address(address, "-s-db") == address


@pytest.mark.parametrize(("args", "names"), [
    (["collect", "-t", "t1", "-s-db", "127.0.0.1:1", "-m", "foo{bar", "--prometheus-url",
      "http://localhost:9/metrics"], ["-m", "'foo{bar'"]),
    (["collect", "-t", "t1", "-s-db", "127.0.0.1:1", "-m", "acc", "--prometheus-url", "localhost:9/metrics"],
     ["--prometheus-url", "'localhost:9/metrics'", "http://HOST:PORT/PATH"]),
    (["collect", "-t", "t1", "-s-db", "127.0.0.1:1", "-m", "acc", "--prometheus-url",
      "http://localhost:99999/metrics"], ["--prometheus-url", "1-65535"]),
    (["parse", "--format", "prometheus", "-m", "acc{", "PATH"], ["'acc{'", "name{label=\"value\",...}"]),
])
def test_prometheus_usage_errors_name_the_value_and_exit_2(tmp_path: Path, args: list[str],
                                                           names: list[str]) -> None:
    exposition = tmp_path / "metrics.prom"
    exposition.write_text("acc 1\n")
    done = _cli(*[str(exposition) if arg == "PATH" else arg for arg in args])
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1, done.stderr
    for name in names:
        assert name in error[0]
    assert done.stdout == ""
