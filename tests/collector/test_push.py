"""`katib_metrics.report_metrics` against our db-manager and a recording server with scripted faults."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import katib_metrics
from katib_metrics.collector import push
from katib_metrics.collector.dbmanager import RunningServer, serve
from katib_metrics.collector.report import RetryPolicy, get_observation_log
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.timestamps import parse_rfc3339
from tests.collector.grpc_doubles import RecordingDBManager, free_port
from tests.collector.push_doubles import QueryableRecorder, serving, trial_env

pytestmark = pytest.mark.timeout(60)
__all__ = ["trial_env"]  # a fixture, used by name

MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def db_manager(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve("127.0.0.1:0", tmp_path / "observations.db")
    yield server
    server.stop(grace=None)


@pytest.fixture
def recorder() -> Iterator[tuple[RecordingDBManager, str]]:
    yield from serving(QueryableRecorder())


@pytest.fixture
def fast_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each attempt gives up after 0.5 s (20 s in use), so a slow server costs the test little."""
    monkeypatch.setattr(push, "POLICY", RetryPolicy(budget=1e9, call_timeout=0.5, initial_backoff=0.05))


def stored(address: str, trial: str = "push-trial") -> list[tuple[str, str, str]]:
    return [tuple(row) for row in get_observation_log(address, trial)]  # type: ignore[misc]


def test_values_land_in_the_db_manager_as_katibs_sdk_writes_them(trial_env: str, db_manager: RunningServer) -> None:
    katib_metrics.report_metrics({"accuracy": 0.99, "epoch": 1, "loss": "0.5"}, db_manager_address=db_manager.address)
    rows = stored(db_manager.address)
    assert [(name, value) for _, name, value in rows] == [("accuracy", "0.99"), ("epoch", "1"), ("loss", "0.5")]
    assert len({stamp for stamp, _, _ in rows}) == 1  # one report, one moment


def test_stamps_are_microseconds_utc_and_never_tie(trial_env: str, recorder: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recorder
    before = time.time()
    for step in range(300):  # far more than one per microsecond tick is possible here
        katib_metrics.report_metrics({"loss": step}, db_manager_address=address)
    stamps = [stamp for stamp, _, _ in servicer.all_rows()]
    assert all(MICROS.fullmatch(stamp) for stamp in stamps)
    instants = [instant for stamp in stamps if (instant := parse_rfc3339(stamp)) is not None]
    assert instants == sorted(instants) and len(set(instants)) == 300
    assert abs(instants[0].seconds + instants[0].nanos / 1e9 - before) < 60


def test_without_trial_name_it_raises_katibs_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KATIB_TRIAL_NAME", raising=False)
    with pytest.raises(ValueError, match=r"^The Trial name is not passed to environment variables$"):
        katib_metrics.report_metrics({"loss": 1.0}, db_manager_address="127.0.0.1:1")


@pytest.mark.parametrize("bad", [True, " 1", "1e400", "abc", None, "", 10**400, b"1"])
def test_a_value_katibs_controller_cannot_read_raises_runtime_error_and_sends_nothing(
        trial_env: str, recorder: tuple[RecordingDBManager, str], bad: object) -> None:
    servicer, address = recorder
    with pytest.raises(RuntimeError, match=r"^Unable to push metrics to Katib DB for Trial push-trial\. Exception: "
                                           r"metric 'loss'"):
        katib_metrics.report_metrics({"accuracy": 0.5, "loss": bad}, db_manager_address=address)
    assert servicer.calls == 0


@pytest.mark.parametrize("bad", [{}, {"": 1.0}, {3: 1.0}, [("loss", 1.0)]])
def test_metrics_that_are_not_a_dict_of_names_raise_runtime_error(trial_env: str, bad: object) -> None:
    with pytest.raises(RuntimeError, match="Unable to push metrics"):
        katib_metrics.report_metrics(bad, db_manager_address="127.0.0.1:1")  # type: ignore[arg-type]


class Tensor:
    """A 0-d tensor: float() works, str() is not a number (torch prints `tensor(0.2500)`)."""

    def __float__(self) -> float:
        return 0.25

    def __str__(self) -> str:
        return "tensor(0.2500)"


def test_number_like_objects_are_sent_as_their_float(trial_env: str, recorder: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recorder
    katib_metrics.report_metrics({"loss": Tensor()}, db_manager_address=address)
    assert servicer.all_rows()[0][1:] == ("loss", "0.25")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.floats(allow_nan=False), st.integers(min_value=-(10**300), max_value=10**300)))
def test_every_float_and_int_is_stored_as_text_go_reads_back_to_it(
        trial_env: str, db_manager: RunningServer, value: float | int) -> None:
    before = len(stored(db_manager.address))
    katib_metrics.report_metrics({"v": value}, db_manager_address=db_manager.address)
    rows = stored(db_manager.address)
    assert len(rows) == before + 1
    parsed = parse_go_float(rows[-1][2])
    assert parsed == float(value)  # finite, or an infinity written as "inf", which Go reads too


def test_address_comes_from_the_argument_then_the_environment_then_katibs_default(
        trial_env: str, monkeypatch: pytest.MonkeyPatch, recorder: tuple[RecordingDBManager, str]) -> None:
    servicer, address = recorder
    assert push.resolve_address(push.DEFAULT_DB_MANAGER_ADDRESS) == "katib-db-manager.kubeflow:6789"
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", address)
    katib_metrics.report_metrics({"loss": 1})  # Katib's default in the signature: the environment wins
    assert servicer.calls == 1
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", f"127.0.0.1:{free_port()}")
    katib_metrics.report_metrics({"loss": 2}, db_manager_address=address)  # given: the argument wins
    assert servicer.calls == 2
    assert push.resolve_address("katib-db-manager.kubeflow:6789") == "katib-db-manager.kubeflow:6789"


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  grpc.StatusCode.DEADLINE_EXCEEDED])
def test_retryable_codes_are_retried_and_the_values_stored_once(
        trial_env: str, code: grpc.StatusCode, fast_attempts: None) -> None:
    recorder = QueryableRecorder(script=lambda n: code if n <= 2 else None)
    for servicer, address in serving(recorder):
        katib_metrics.report_metrics({"loss": 0.5, "accuracy": 0.7}, db_manager_address=address, timeout=30)
        assert servicer.calls == 3
        assert [row[1:] for row in servicer.all_rows()] == [("loss", "0.5"), ("accuracy", "0.7")]


def test_a_reply_lost_after_the_server_stored_is_not_stored_twice(trial_env: str, fast_attempts: None) -> None:
    # The server stores the first request, then answers too late: the client sees DEADLINE_EXCEEDED.
    recorder = QueryableRecorder(delay_calls={1}, store_before_delay=True, delay=2.0)
    for servicer, address in serving(recorder):
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=address, timeout=30)
        assert isinstance(servicer, QueryableRecorder) and servicer.lookups == 1
        assert servicer.calls == 1 and [row[1:] for row in servicer.all_rows()] == [("loss", "0.5")]


def test_a_request_lost_before_the_server_stored_is_sent_again(trial_env: str, fast_attempts: None) -> None:
    recorder = QueryableRecorder(delay_calls={1}, store_before_delay=False, delay=2.0)
    for servicer, address in serving(recorder):
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=address, timeout=30)
        assert isinstance(servicer, QueryableRecorder) and servicer.lookups == 1
        assert [row[1:] for row in servicer.all_rows()] == [("loss", "0.5")]


def test_a_refusal_raises_at_once_naming_the_code_and_the_address(trial_env: str) -> None:
    recorder = QueryableRecorder(script=lambda n: grpc.StatusCode.INVALID_ARGUMENT)
    for servicer, address in serving(recorder):
        with pytest.raises(RuntimeError, match=f"at {address} answered INVALID_ARGUMENT: scripted .* 1 rows not"):
            katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=address)
        assert servicer.calls == 1


def test_an_unreachable_db_manager_fails_within_the_callers_timeout(trial_env: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"at {address} answered UNAVAILABLE.* after \d+ attempts for 1.5 s"):
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=address, timeout=1.5)
    assert 1.0 < time.monotonic() - started < 6.0


def test_a_db_manager_that_comes_up_within_the_timeout_gets_the_values(trial_env: str, tmp_path: Path) -> None:
    port = free_port()
    servers: list[RunningServer] = []
    # The db-manager starts while report_metrics is already retrying against the closed port.
    starter = threading.Timer(1.0, lambda: servers.append(serve(f"127.0.0.1:{port}", tmp_path / "db")))
    starter.start()
    try:
        katib_metrics.report_metrics({"loss": 0.5}, db_manager_address=f"127.0.0.1:{port}", timeout=30)
        starter.join()
        assert [row[1:] for row in stored(servers[0].address)] == [("loss", "0.5")]
    finally:
        starter.join()
        for server in servers:
            server.stop(grace=None)


def test_the_signature_and_defaults_are_katibs() -> None:
    import inspect

    signature = inspect.signature(katib_metrics.report_metrics)
    assert list(signature.parameters) == ["metrics", "db_manager_address", "timeout"]
    assert signature.parameters["db_manager_address"].default == "katib-db-manager.kubeflow:6789"
    assert signature.parameters["timeout"].default == 120
