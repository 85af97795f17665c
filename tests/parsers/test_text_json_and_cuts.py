"""Text collection reads JSON-object lines no filter matched (difference 14) and says when a filter cuts a number."""

from __future__ import annotations

import io

from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.stream import scan
from katib_metrics.parsers.text import TextParser

SDK = b'{"epoch": 1, "loss": "0.52", "step": 100, "timestamp": "2026-05-01T10:00:00.123456+00:00"}\n'
HYPERTUNE = b'{"timestamp": 1638422847.28721, "trial": "0", "accuracy": "0.9", "global_step": "300"}\n'
KERAS = r"([\w-]+):\s*([+-]?\d*\.?\d+)"


def rows(data: bytes, spec: CollectorSpec, notices: list[tuple[int, str]] | None = None) -> list[MetricLog]:
    parser = TextParser(spec, on_notice=None if notices is None else lambda n, m: notices.append((n, m)))
    return [log for batch in scan(io.BytesIO(data), parser) for log in batch]


def test_sdk_and_hypertune_lines_are_read_as_json_lines_without_names() -> None:
    got = rows(b"INFO start\n" + SDK + HYPERTUNE + b"loss=0.3\n", CollectorSpec())
    assert got == [MetricLog("2026-05-01T10:00:00.123456+00:00", "loss", "0.52"),
                   MetricLog("2021-12-02T05:27:27.28721Z", "accuracy", "0.9"),
                   MetricLog("0001-01-01T00:00:00Z", "loss", "0.3")]  # step, epoch, trial: not metrics


def test_named_step_and_epoch_are_metrics_and_the_fast_path_finds_json_lines() -> None:
    got = rows(SDK * 3, CollectorSpec(metric_names=("loss", "epoch")))
    assert [(log.name, log.value) for log in got] == [("loss", "0.52"), ("epoch", "1")] * 3


def test_a_filter_match_wins_and_brace_noise_is_not_an_error() -> None:
    parser = TextParser(CollectorSpec(metric_names=("loss",)))
    assert parser.parse_line('{"msg": "loss=1", "loss": 2}', 1) == [MetricLog("0001-01-01T00:00:00Z", "loss", "1")]
    assert parser.parse_line("{loss: not json}", 2) == []
    assert not parser.stats.skipped


def test_user_filter_json_fallback() -> None:
    line = b'{"loss": "0.52", "step": 100}\n'  # no `name:value` for the filter (the SDK's time stamp has one)
    assert [log.value for log in rows(line, CollectorSpec(metric_names=("loss",), filters=(KERAS,)))] == ["0.52"]


def test_a_number_cut_by_the_filter_is_said_once_per_metric_naming_the_line() -> None:
    notices: list[tuple[int, str]] = []
    data = b"epoch 1\nloss: 2.5e-05 - lr: 1.0000e-04\nloss: 3.5e-05 - lr: 2e-04\n"
    got = rows(data, CollectorSpec(metric_names=("loss", "lr"), filters=(KERAS,)), notices)
    assert [log.value for log in got] == ["2.5", "1.0000", "3.5", "2"]  # what Katib records, but said:
    assert [(n, m.split(":")[0]) for n, m in notices] == [(2, "loss"), (2, "lr")]
    assert "'e-05'" in notices[0][1]
    fixed = r"([\w-]+):\s*([+-]?\d*\.?\d+(?:[eE][+-]?\d+)?)"  # the README's regex
    notices.clear()
    got = rows(data, CollectorSpec(metric_names=("loss", "lr"), filters=(fixed,)), notices)
    assert [log.value for log in got] == ["2.5e-05", "1.0000e-04", "3.5e-05", "2e-04"] and not notices
