"""Chunked one-shot scanning gives exactly what line-by-line parsing gives, in bounded memory."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.defaultscan import DefaultFilterScan as _DefaultFilterScan
from katib_metrics.parsers.lines import iter_lines, make_line_parser
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricLog
from katib_metrics.parsers.stream import BlockParser, scan
from katib_metrics.parsers.text import TextParser


def line_by_line(data: bytes, spec: CollectorSpec, where: list[int] | None = None) -> tuple[list[MetricLog], int]:
    parser = make_line_parser(spec, on_skip=None if where is None else lambda skip: where.append(skip.where))
    logs = [log for n, line in enumerate(iter_lines(io.BytesIO(data)), 1) for log in parser.parse_line(line, n)]
    return logs, parser.stats.lines


def scanned(data: bytes, spec: CollectorSpec, chunk_size: int) -> tuple[list[MetricLog], int, list[int]]:
    where: list[int] = []
    parser = TextParser(spec, on_skip=lambda skip: where.append(skip.where))
    logs = [log for batch in scan(io.BytesIO(data), parser, chunk_size=chunk_size) for log in batch]
    return logs, parser.stats.lines, where


NOISE = [b"INFO step done", b"", b"epoch 3 loss=abc", b"\xff\xfe broken utf-8 loss=0.1", b"accuracy=0.5\r",
         b"2024-01-01T00:00:00Z loss=1 accuracy=2", b"[2024-01-01 00:00:00,5] loss=3", b"val_loss=9"]


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("names", [("loss", "accuracy"), ("loss",), ()])
def test_scan_equals_line_by_line(chunk_size: int, names: tuple[str, ...]) -> None:
    rnd = random.Random(chunk_size)
    data = b"\n".join(rnd.choice(NOISE) for _ in range(400))
    spec = CollectorSpec(metric_names=names)
    expected, lines = line_by_line(data, spec)
    logs, counted, _ = scanned(data, spec, chunk_size)
    assert logs == expected
    assert counted == lines == 400


def test_skipped_values_carry_their_true_line_numbers() -> None:
    data = b"noise\n" * 1000 + b"loss=abc\n" + b"noise\n" * 10 + b"loss=-\n"
    _, _, where = scanned(data, CollectorSpec(metric_names=("loss",)), chunk_size=100)
    assert where == [1001, 1012]


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n\n"])
def test_empty_input(data: bytes) -> None:
    logs, counted, _ = scanned(data, CollectorSpec(metric_names=("loss",)), 1 << 20)
    assert logs == []
    assert counted == data.count(b"\n")


def test_unterminated_last_line_is_parsed() -> None:
    logs, counted, _ = scanned(b"noise\nloss=1", CollectorSpec(metric_names=("loss",)), 4)
    assert [log.value for log in logs] == ["1"]
    assert counted == 2


def test_very_long_line_without_newline() -> None:
    data = b"x " * (15 << 20) + b"loss=0.25"  # 30 MiB in one line
    logs, counted, _ = scanned(data, CollectorSpec(metric_names=("loss",)), 4 << 20)
    assert [log.value for log in logs] == ["0.25"]
    assert counted == 1


def test_user_filters_without_names_scan_every_line() -> None:
    spec = CollectorSpec(filters=(r"(\w+):\s*(\d+)",))
    parser = TextParser(spec)
    logs = [log for batch in scan(io.BytesIO(b"a: 1\nnoise\nb: 2\n"), parser, chunk_size=3) for log in batch]
    assert [(log.name, log.value) for log in logs] == [("a", "1"), ("b", "2")]
    assert parser.stats.lines == 3


def test_json_lines_scan() -> None:
    spec = CollectorSpec(metric_names=("loss",), format=FileFormat.JSON)
    parser = make_line_parser(spec)
    data = b'{"loss": 1}\r\nnot json\n\n{"loss": "2"}'
    logs = [log for batch in scan(io.BytesIO(data), parser, chunk_size=5) for log in batch]
    assert [log.value for log in logs] == ["1", "2"]
    assert parser.stats.lines == 4


TOKENS = ["loss", "acc", "val_loss", "train-loss", "x|loss", "=", " ", "\t", "0.5", "-", "+", "1e", "E3", ".", "1",
          "\n", "abc", "_", "é", "2024-01-01T00:00:00Z ", "[2024-01-01 00:00:01] ", "loss=", "acc=1-loss=2"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.sampled_from([("loss",), ("loss", "acc"), ("acc", "loss")]))
def test_fast_default_filter_scan_equals_line_by_line(tokens: list[str], names: tuple[str, ...]) -> None:
    data = "".join(tokens).encode()
    spec = CollectorSpec(metric_names=names)
    assert _DefaultFilterScan.applies(TextParser(spec))
    expected_where: list[int] = []
    expected, lines = line_by_line(data, spec, expected_where)
    logs, counted, where = scanned(data, spec, chunk_size=16)
    assert logs == expected
    assert counted == lines
    assert where == expected_where


def test_names_the_fast_scan_cannot_take_use_the_exact_path() -> None:
    data = b"e1=5 loss=2 val/acc=3 1x=4\n"
    for names in [("e1", "loss"), ("val/acc",), ("1x", "loss")]:
        spec = CollectorSpec(metric_names=names)
        assert scanned(data, spec, 1 << 20)[0] == line_by_line(data, spec)[0]


def test_block_parser_continues_line_numbers_across_blocks() -> None:
    where: list[int] = []
    parser = TextParser(CollectorSpec(metric_names=("loss",)), on_skip=lambda skip: where.append(skip.where))
    blocks = BlockParser(parser)
    assert blocks.parse_block(b"noise\nloss=1\n", "2024-01-01T00:00:00Z") == [
        MetricLog("2024-01-01T00:00:00Z", "loss", "1")]
    assert blocks.parse_block(b"loss=x\n") == []
    assert where == [3]
    assert parser.stats.lines == 3
