"""Blocks of many line shapes through the learnt templates give exactly what line-by-line parsing gives."""

from __future__ import annotations

import io
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.defaultscan import DefaultFilterScan
from katib_metrics.parsers.lines import iter_lines, make_line_parser
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.stream import scan
from katib_metrics.parsers.template import RFC3339_TOKEN, LineTemplate
from katib_metrics.parsers.templates import MAX_TEMPLATES
from katib_metrics.parsers.text import TextParser
from katib_metrics.parsers.timestamps import is_go_rfc3339nano

NAMES = ["loss", "accuracy", "Validation-accuracy", "val_loss", "never_printed"]
STAMPS = ["2024-03-04T01:55:08.5Z", "2024-02-29T23:59:59Z", "2023-02-29T01:00:00Z", "2024-04-31T01:00:00Z",
          "2024-03-04T1:05:08+01:00", "2024-03-04T01:55:08,25-24:00", "[2024-03-04 01:55:08]", "INFO", "12"]
VALUES = ["0.5", "1", "-2.5e-3", ".25", "+3", "1E5"]
BAD_VALUES = ["", "nan", "7.", "1e", "1e999", "-", "0x1", "5.e3"]
NOISE = ["WARNING val_loss did not improve from 0.31", "Epoch 3: Validation-accuracy improved, saving model",
         "12/100 [====>.....] - ETA: 3s", "", "INFO step done", '{"loss": 0.5, "accuracy": "x"}',
         "loss=1-accuracy=2", "x|loss=3 accuracy=4", "accuracy", "throughput=1234.5 examples/sec"]


@st.composite
def varied_log(draw: st.DrawFn) -> bytes:
    """Batch lines, epoch lines that add names, lines of other shapes and separators, warnings and progress
    lines, values that are no numbers and time stamps Go rejects, in any mix."""
    lines = []
    for n in range(draw(st.integers(min_value=1, max_value=60))):
        kind = draw(st.integers(0, 9))
        stamp = draw(st.sampled_from(STAMPS)) if draw(st.integers(0, 5)) == 0 else STAMPS[0]
        value = draw(st.sampled_from(BAD_VALUES)) if draw(st.integers(0, 15)) == 0 else draw(st.sampled_from(VALUES))
        if kind <= 3:
            lines.append(f"{stamp} step={n} loss={value} accuracy=0.9")
        elif kind == 4:
            lines.append(f"{stamp} epoch={n} loss=0.5 accuracy={value} Validation-accuracy=0.8 val_loss=0.7")
        elif kind == 5:  # one of many shapes: more than the templates kept
            lines.append(f"{stamp} f{draw(st.integers(0, MAX_TEMPLATES + 3))}=1, loss={value}")
        elif kind == 6:
            lines.append(f"loss={value} | accuracy=0.5")
        else:
            lines.append(draw(st.sampled_from(NOISE)))
    ending = draw(st.sampled_from(["\n", "\r\n", ""]))
    return (ending.join(lines) + ending).encode()


def line_by_line(data: bytes, spec: CollectorSpec) -> tuple[list[MetricLog], Counter[str], list[int]]:
    where: list[int] = []
    parser = make_line_parser(spec, on_skip=lambda skip: where.append(skip.where))
    logs = [log for n, line in enumerate(iter_lines(io.BytesIO(data)), 1) for log in parser.parse_line(line, n)]
    return logs, parser.stats.values, where


def scanned(data: bytes, spec: CollectorSpec, chunk_size: int) -> tuple[list[MetricLog], Counter[str], list[int]]:
    where: list[int] = []
    parser = TextParser(spec, on_skip=lambda skip: where.append(skip.where))
    logs = [log for batch in scan(io.BytesIO(data), parser, chunk_size=chunk_size) for log in batch]
    return logs, parser.stats.values, where


@settings(max_examples=600, deadline=None)
@given(varied_log(), st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True),
       st.sampled_from([64, 512, 1 << 20]))
def test_varied_logs_equal_line_by_line(data: bytes, names: list[str], chunk_size: int) -> None:
    spec = CollectorSpec(metric_names=tuple(names))
    assert scanned(data, spec, chunk_size) == line_by_line(data, spec)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True), st.integers(1, 40),
       st.integers(1, 300), st.sampled_from(VALUES + BAD_VALUES))
def test_dense_logs_with_missing_and_sparse_names_equal_line_by_line(
        names: list[str], every: int, lines: int, odd_value: str) -> None:
    # Batch lines on every line, an epoch line adding names every `every` lines, one odd value somewhere.
    rows = []
    for n in range(lines):
        extra = " Validation-accuracy=0.8" if n % every == every - 1 else ""
        value = odd_value if n == lines // 2 else "0.25"
        rows.append(f"2024-03-04T01:55:{n % 60:02d}.{n:06d}Z epoch={n} loss={value} accuracy=0.5{extra}\n")
    data = "".join(rows).encode()
    spec = CollectorSpec(metric_names=tuple(names))
    assert scanned(data, spec, 256) == line_by_line(data, spec)


def by_templates(data: bytes, names: tuple[str, ...]) -> tuple[list[MetricLog] | None, DefaultFilterScan]:
    scanner = DefaultFilterScan(TextParser(CollectorSpec(metric_names=names)))
    return scanner._by_templates(data, 1, "Z"), scanner


def test_a_varied_block_is_matched_by_one_template_per_shape_whatever_name_comes_first() -> None:
    lines = []
    for n in range(1, 301):
        lines.append(b"2024-03-04T01:55:08Z step=%d loss=0.%d accuracy=0.5" % (n, n))
        if n % 100 == 0:
            lines.append(b"2024-03-04T01:55:09Z epoch=%d Validation-accuracy=0.7 loss=0.1" % (n // 100))
            lines.append(b"Epoch %d: Validation-accuracy improved, loss=nan" % n)  # a skip, on its true line
        if n % 7 == 0:
            lines.append(b"12/100 [====>.....] - ETA: 3s")
    data = b"\n".join(lines) + b"\n"
    names = ("Validation-accuracy", "loss", "accuracy")
    logs, scanner = by_templates(data, names)
    spec = CollectorSpec(metric_names=names)
    assert logs == line_by_line(data, spec)[0]
    assert scanner.templates is not None and len(scanner.templates.templates) == 2
    assert scanner.templates.used == [300, 3]
    where: list[int] = []
    parser = TextParser(spec, on_skip=lambda skip: where.append(skip.where))
    DefaultFilterScan(parser).block(data, 1, "Z")
    assert where == line_by_line(data, spec)[2] == [116, 232, 348]


def test_a_name_never_printed_does_not_turn_the_block_away() -> None:
    data = b"".join(b"2024-03-04T01:55:08Z epoch=%d loss=0.%d accuracy=0.5\n" % (n, n) for n in range(200))
    logs, scanner = by_templates(data, ("Validation-accuracy", "loss", "accuracy"))
    assert logs is not None and len(logs) == 400
    assert scanner.templates is not None and scanner.templates.used == [200]


def test_odd_lines_of_a_sparse_block_carry_their_true_line_numbers() -> None:
    noise = b"INFO data loader prefetched a batch of 512 examples from shard 7\n" * 30
    data = b"".join(noise + b"2024-03-04T01:55:08Z loss=0.%d\n" % n for n in range(20)) + noise + b"loss=-\n"
    where: list[int] = []
    parser = TextParser(CollectorSpec(metric_names=("loss",)), on_skip=lambda skip: where.append(skip.where))
    assert len(DefaultFilterScan(parser).block(data, 1, "Z")) == 20
    assert where == [31 * 20 + 31]


def test_rfc3339_token_accepts_what_go_accepts_on_every_date_of_400_years() -> None:
    import re

    token = re.compile(RFC3339_TOKEN)
    for year in [*range(1600, 2000), 0, 100, 400, 1900, 2000, 2100, 9999]:
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year:04d}-{month:02d}-{day:02d}T01:02:03Z"
                assert (token.fullmatch(text.encode()) is not None) == is_go_rfc3339nano(text), text


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-9]{1,2}:[0-6][0-9]:[0-6][0-9]([.,][0-9]{0,3})?"
                     r"(Z|[+-][0-9]{2}:[0-9]{2}|)\Z", fullmatch=True))
def test_rfc3339_token_equals_go_on_clock_and_zone(text: str) -> None:
    import re

    assert (re.fullmatch(RFC3339_TOKEN, text.encode()) is not None) == is_go_rfc3339nano(text)


def test_a_template_learnt_from_a_line_matches_it() -> None:
    line = b"2024-03-04T01:55:08Z epoch=1 loss=+.5e-3 accuracy=7"
    template = LineTemplate.learn(line, {"loss": b"loss", "accuracy": b"accuracy"})
    assert template is not None and template.regex.findall(line) == [(b"2024-03-04T01:55:08Z", b"+.5e-3", b"7")]


def test_the_cycle_collector_is_left_as_it_was_found() -> None:
    import gc

    data = b"2024-03-04T01:55:08Z epoch=1 loss=0.5\n" * 50
    assert gc.isenabled()
    assert by_templates(data, ("loss",))[0] is not None
    assert gc.isenabled()
    gc.disable()
    try:
        assert by_templates(data, ("loss",))[0] is not None
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()


def test_blocks_of_more_shapes_than_templates_go_the_exact_way_and_back_off() -> None:
    churn = b"".join(b"2024-03-04T01:55:08Z step=%d g%d_lr=0.1 loss=0.%d\n" % (n, n % 40, n) for n in range(400))
    regular = b"".join(b"2024-03-04T01:55:08Z step=%d loss=0.%d\n" % (n, n) for n in range(400))
    spec = CollectorSpec(metric_names=("loss",))
    scanner = DefaultFilterScan(TextParser(spec))
    assert scanner._by_templates(churn, 1, "Z") is None  # 40 shapes, 8 templates: most lines are odd
    assert scanner._pause == 4
    assert scanner.block(churn, 1, "Z") == line_by_line(churn, spec)[0]  # the exact way, without a template pass
    assert scanner._pause == 3
    scanner._pause = 0
    assert scanner._by_templates(regular, 1, "Z") == line_by_line(regular, spec)[0]
    assert scanner._backoff == 0
