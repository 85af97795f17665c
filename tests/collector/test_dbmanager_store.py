"""The local db-manager's SQLite store: Katib's insert and query rules, atomicity, durability, threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from katib_metrics.collector.dbmanager.store import InvalidTimestamp, ObservationStore, StoreOpenError, default_db_path
from katib_metrics.parsers.model import MetricLog

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def store(tmp_path: Path) -> ObservationStore:
    return ObservationStore(tmp_path / "obs.db")


def ml(time_stamp: str, name: str = "loss", value: str = "1") -> MetricLog:
    return MetricLog(time_stamp, name, value)


@pytest.mark.parametrize(
    ("reported", "returned"),
    [
        ("2021-12-02T05:27:27.000028721Z", "2021-12-02T05:27:27.000028Z"),  # truncated, not rounded
        ("2021-12-02T05:27:27.999999999Z", "2021-12-02T05:27:27.999999Z"),
        ("2021-12-02T14:27:50.000035161+09:00", "2021-12-02T05:27:50.000035Z"),  # converted to UTC
        ("2016-12-31T21:02:05.120000Z", "2016-12-31T21:02:05.12Z"),  # trailing zeros trimmed
        ("2016-12-31T21:02:05.0000001Z", "2016-12-31T21:02:05Z"),
        ("2024-03-04T1:55:08,5-00:30", "2024-03-04T02:25:08.5Z"),  # Go's lenient hour and comma fraction
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),  # Katib's "unavailable" time
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z"),
    ],
)
def test_times_are_stored_utc_with_microseconds_truncated(
    store: ObservationStore, reported: str, returned: str
) -> None:
    store.report("t", [ml(reported)])
    assert store.query("t") == [ml(returned)]


def test_names_and_values_are_stored_verbatim(store: ObservationStore) -> None:
    logs = [ml("2024-01-01T00:00:00Z", "a|loss", "unavailable"), ml("2024-01-01T00:00:01Z", "ünï", "")]
    store.report("t", logs)
    assert store.query("t") == logs


def test_rows_come_back_in_time_order_and_equal_times_in_report_order(store: ObservationStore) -> None:
    store.report("t", [ml("2024-01-01T00:00:03Z", value="c"), ml("2024-01-01T00:00:01Z", value="a")])
    store.report("t", [ml("2024-01-01T00:00:03Z", value="d"), ml("2024-01-01T00:00:02+00:00", value="b")])
    assert [row.value for row in store.query("t")] == ["a", "b", "c", "d"]


def test_query_filters_by_exact_metric_name_and_inclusive_bounds(store: ObservationStore) -> None:
    store.report(
        "t", [ml(f"2024-01-01T00:00:0{i}Z", name, str(i)) for i in range(6) for name in ("loss", "loss2")]
    )
    store.report("other", [ml("2024-01-01T00:00:02Z")])
    assert len(store.query("t")) == 12
    assert [r.value for r in store.query("t", "loss")] == ["0", "1", "2", "3", "4", "5"]
    assert store.query("t", "los") == []
    assert [r.value for r in store.query("t", "loss", start_time="2024-01-01T00:00:02Z")] == [
        "2",
        "3",
        "4",
        "5",
    ]
    assert [r.value for r in store.query("t", "loss", end_time="2024-01-01T00:00:02Z")] == ["0", "1", "2"]
    # Bounds are converted to UTC and truncated to µs like the rows, then compared inclusively.
    between = store.query("t", "loss", "2024-01-01T09:00:01.0000009+09:00", "2024-01-01T00:00:03.0000001Z")
    assert [r.value for r in between] == ["1", "2", "3"]


@pytest.mark.parametrize("field", ["start_time", "end_time"])
def test_unparsable_bound_names_the_field_and_value(store: ObservationStore, field: str) -> None:
    with pytest.raises(InvalidTimestamp, match=rf"invalid {field} '2024-01-01 00:00:00'"):
        store.query("t", **{field: "2024-01-01 00:00:00"})


def test_unparsable_time_stamp_rejects_the_whole_request(store: ObservationStore) -> None:
    good = ml("2024-01-01T00:00:00Z")
    with pytest.raises(InvalidTimestamp) as info:
        store.report("t", [good, ml("2024-01-01T00:00:00", "acc"), good])
    assert (info.value.field, info.value.value) == ("time_stamp", "2024-01-01T00:00:00")
    assert "row 1 (metric 'acc')" in str(info.value)
    assert store.query("t") == []


def test_rows_without_time_stamp_are_skipped_and_empty_requests_succeed(store: ObservationStore) -> None:
    assert store.report("t", []) == 0
    assert store.report("t", [ml("")]) == 0
    assert store.report("t", [ml(""), ml("2024-01-01T00:00:00Z")]) == 1
    assert store.query("t") == [ml("2024-01-01T00:00:00Z")]


def test_delete_removes_only_that_trial(store: ObservationStore) -> None:
    store.report("a", [ml("2024-01-01T00:00:00Z")] * 3)
    store.report("b", [ml("2024-01-01T00:00:00Z")])
    assert store.delete("a") == 3
    assert store.query("a") == [] and len(store.query("b")) == 1


def test_rows_survive_closing_and_reopening(tmp_path: Path) -> None:
    first = ObservationStore(tmp_path / "obs.db")
    first.report("t", [ml("2024-01-01T00:00:00Z")])
    first.close()
    assert ObservationStore(tmp_path / "obs.db").query("t") == [ml("2024-01-01T00:00:00Z")]


def test_table_is_shaped_like_katibs(tmp_path: Path) -> None:
    ObservationStore(tmp_path / "obs.db").report("t", [ml("2024-01-01T00:00:00.5Z")])
    with sqlite3.connect(tmp_path / "obs.db") as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(observation_logs)")]
        assert columns == ["trial_name", "id", "time", "metric_name", "value"]
        assert conn.execute(
            "SELECT trial_name, time, metric_name, value FROM observation_logs"
        ).fetchall() == [("t", 1704067200_500000, "loss", "1")]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_concurrent_reporters_from_threads_lose_nothing(store: ObservationStore) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def reporter(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for batch in range(5):
                store.report(
                    f"trial-{n % 2}",
                    [ml(f"2024-01-01T00:{batch:02d}:00Z", f"m{n}", str(i)) for i in range(50)],
                )
                store.query(f"trial-{n % 2}", f"m{n}")
        except BaseException as err:  # surfaced below; a thread cannot fail the test itself
            errors.append(err)

    threads = [threading.Thread(target=reporter, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert len(store.query("trial-0")) == len(store.query("trial-1")) == 4 * 5 * 50


def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreOpenError, match=r"cannot open the observation database .*file/sub/obs.db.*--db"):
        ObservationStore(blocker / "sub" / "obs.db")


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StoreOpenError, match=r"junk\.db"):
        ObservationStore(junk)


def test_a_foreign_table_of_the_same_name_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "foreign.db") as conn:
        conn.execute("CREATE TABLE observation_logs (x TEXT)")
    with pytest.raises(StoreOpenError, match="not a usable observation database"):
        ObservationStore(tmp_path / "foreign.db")


def test_default_path_is_in_the_users_data_dir() -> None:
    path = default_db_path()
    assert path.name == "observations.db" and path.parent.name == "katib-metrics"
