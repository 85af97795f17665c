"""Dense blocks through a learnt line template give exactly what line-by-line parsing gives."""

from __future__ import annotations

import io
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.defaultscan import DefaultFilterScan
from katib_metrics.parsers.lines import iter_lines, make_line_parser
from katib_metrics.parsers.model import CollectorSpec, MetricLog
from katib_metrics.parsers.stream import BlockParser
from katib_metrics.parsers.template import LineTemplate
from katib_metrics.parsers.text import TextParser

WANTED = {"loss": b"loss", "accuracy": b"accuracy"}


def line_by_line(data: bytes, spec: CollectorSpec) -> tuple[list[MetricLog], Counter[str]]:
    parser = make_line_parser(spec)
    logs = [log for n, line in enumerate(iter_lines(io.BytesIO(data)), 1) for log in parser.parse_line(line, n)]
    return logs, parser.stats.values


HEADS = st.sampled_from(["2024-03-04T01:55:08.5Z ", "2024-03-04 01:55:08,123 INFO ", "[2024-03-04 01:55:08] ", "",
                         "step: ", "2024-03-04T01:55:08Z\t", "2024-03-04T01:55:08Z", "x loss ", "12 ", "a=1 "])
VALUES = st.sampled_from(["0.5", "1", "-2.5e-3", ".25", "", "-", "1e400", "7.", "3e", "0x1"])
NOISE = st.sampled_from([b"INFO step done", b"", b"WARNING accuracy is low", b"val_loss=3", b"x=1 y=2",
                         b"2024-03-04T01:55:08Z checkpoint saved", b"loss", b"accuracy=0.5"])
SEPARATORS = st.sampled_from([" ", ", ", " | ", "  ", "-", " loss ", "=", ""])


@st.composite
def dense_lines(draw: st.DrawFn, noise: tuple[int, int] = (0, 12)) -> bytes:
    template_sep = draw(st.sampled_from([" ", ", ", " | "]))
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        if draw(st.integers(0, 5)) == 0:  # a deviating line
            sep = draw(SEPARATORS)
            value = draw(VALUES)
        else:
            sep, value = template_sep, draw(st.sampled_from(["0.5", "1", "-2.5e-3", ".25"]))
        head = draw(HEADS) if draw(st.integers(0, 4)) == 0 else "2024-03-04T01:55:08.5Z "
        lines.append(f"{head}epoch=3{template_sep}loss={value}{sep}accuracy=0.9".encode())
        for _ in range(draw(st.integers(*noise))):  # noise between metric lines: sparse blocks
            lines.append(draw(NOISE))
    ending = draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    return ending.join(lines) + ending


@settings(max_examples=1200, deadline=None)
@given(dense_lines())
def test_template_blocks_equal_line_by_line(data: bytes) -> None:
    spec = CollectorSpec(metric_names=("loss", "accuracy"))
    expected, expected_values = line_by_line(data, spec)
    parser = TextParser(spec)
    assert BlockParser(parser).parse_block(data) == expected
    assert parser.stats.values == expected_values


@settings(max_examples=500, deadline=None)
@given(dense_lines(noise=(6, 30)))
def test_sparse_template_blocks_equal_line_by_line(data: bytes) -> None:
    spec = CollectorSpec(metric_names=("loss", "accuracy"))
    expected, expected_values = line_by_line(data, spec)
    parser = TextParser(spec)
    assert BlockParser(parser).parse_block(data) == expected
    assert parser.stats.values == expected_values


def by_templates(data: bytes, names: tuple[str, ...]) -> list[MetricLog] | None:
    """The template path alone: None when it refuses the block."""
    return DefaultFilterScan(TextParser(CollectorSpec(metric_names=names)))._by_templates(data, 1, "Z")


def test_a_sparse_block_takes_the_template_path_over_its_metric_lines() -> None:
    noise = b"INFO data loader prefetched a batch of 512 examples from shard 7\n" * 30
    data = b"".join(noise + b"2024-03-04T01:55:%02dZ epoch=%d loss=0.%d accuracy=0.%d\n" % (i, i, i, i)
                    for i in range(40))
    spec = CollectorSpec(metric_names=("loss", "accuracy"))
    assert by_templates(data, ("loss", "accuracy")) == line_by_line(data, spec)[0]


def test_a_regular_block_takes_the_template_path() -> None:
    data = b"".join(b"2024-03-04T01:55:%02dZ epoch=%d loss=0.%d accuracy=0.%d\n" % (i, i, i, i) for i in range(60))
    template = LineTemplate.learn(data.split(b"\n")[0], WANTED)
    assert template is not None and template.rfc_head and template.wanted_names == ["loss", "accuracy"]
    logs = by_templates(data, ("loss", "accuracy"))
    assert logs is not None and len(logs) == 120
    assert logs[:2] == [MetricLog("2024-03-04T01:55:00Z", "loss", "0.0"), MetricLog("2024-03-04T01:55:00Z",
                                                                                    "accuracy", "0.0")]


def test_blocks_the_templates_cannot_vouch_for_are_refused() -> None:
    line = b"2024-03-04T01:55:00Z epoch=1 loss=0.5 accuracy=0.7\n"
    for odd in [b"loss_2024 epoch=1 loss=0.5 accuracy=0.7\n",  # a wanted name in a template line's head
                b"2024-03-04T01:55:00Z epoch=1 loss=1e999 accuracy=0.7\n"]:  # a value float64 cannot hold
        assert by_templates(line * 5 + odd, ("loss", "accuracy")) is None


def test_lines_without_a_usable_shape_learn_nothing() -> None:
    for line in [b"no metrics here", b"loss=1-accuracy=2", b"loss=1e accuracy=2", b"x|loss=1", b"loss=2.5e",
                 b"epoch=1 loss= accuracy=2", b"a=1 b=2"]:
        assert LineTemplate.learn(line, WANTED) is None


def test_lines_that_start_with_their_metrics_take_the_template_path() -> None:
    data = b"".join(b"epoch=%d step=%d loss=0.%d\n" % (i, i, i) for i in range(200))
    template = LineTemplate.learn(data.split(b"\n")[0], {"loss": b"loss"})
    assert template is not None
    logs = DefaultFilterScan(TextParser(CollectorSpec(metric_names=("loss",))))._by_templates(
        data, 1, "2024-01-01T00:00:00Z")
    assert logs is not None and len(logs) == 200
    assert {log.time_stamp for log in logs} == {"2024-01-01T00:00:00Z"}
