"""Lines of any length: windows over a long line give exactly the per-line rows, in bounded memory."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from katib_metrics.parsers import longline
from katib_metrics.parsers.jsonl import JsonLinesParser
from katib_metrics.parsers.lines import iter_lines
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricLog
from katib_metrics.parsers.stats import SkipReason
from katib_metrics.parsers.stream import BlockParser, scan
from katib_metrics.parsers.template import MAX_PAIRS, LineTemplate
from katib_metrics.parsers.text import TextParser

KERAS = r"([\w-]+):\s*([+-]?\d*\.?\d+)"


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Windows of 400 characters overlapping by 100, so hypothesis' lines span many of them."""
    monkeypatch.setattr(longline, "WINDOW", 400)
    monkeypatch.setattr(longline, "OVERLAP", 100)
    monkeypatch.setattr(longline, "STAMP_PREFIX", 64)
    yield


def per_line(data: bytes, spec: CollectorSpec) -> tuple[list[MetricLog], Counter[SkipReason]]:
    """The oracle: every whole line through the plain per-line parser."""
    parser = TextParser(spec)
    logs = [log for n, line in enumerate(iter_lines(io.BytesIO(data)), 1) for log in parser.parse_line(line, n)]
    return logs, parser.stats.skipped


def scanned(data: bytes, spec: CollectorSpec, chunk_size: int) -> tuple[list[MetricLog], TextParser]:
    parser = TextParser(spec)
    logs = [log for batch in scan(io.BytesIO(data), parser, chunk_size=chunk_size) for log in batch]
    return logs, parser


def check_same(data: bytes, spec: CollectorSpec, chunk_size: int) -> None:
    expected, expected_skips = per_line(data, spec)
    logs, parser = scanned(data, spec, chunk_size)
    assert parser.stats.lines == len(list(iter_lines(io.BytesIO(data))))
    if parser.stats.skipped[SkipReason.LINE_CUT]:  # said: a value may be lost there, never one invented
        assert not Counter(logs) - Counter(expected)
        return
    assert logs == expected
    assert parser.stats.skipped == expected_skips


PAIR_NAMES = ["loss", "acc", "val_loss", "x"]
VALUES = ["1", "0.5", "-2.5e-05", "1e3", ".5", "abc", "-", "12345678"]
NOISE = ["Epoch", "1:", "12%|####", "[00:04<00:05,", "98.1it/s,", "]", "|", "INFO", "{}", "a-b", "=", "loss"]
SEPARATORS = [" ", "\r", ", ", "\t", "  ", "|", " = ", "="]


@st.composite
def long_text_lines(draw: st.DrawFn, pair: str, separators: list[str]) -> bytes:
    """Lines of pairs and noise; some run over many windows (hundreds of pairs), a few carry a time stamp."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        repeat = draw(st.sampled_from([1, 2, 50, 300]))
        tokens = draw(st.lists(st.one_of(
            st.builds(lambda n, v: pair.format(n, v), st.sampled_from(PAIR_NAMES), st.sampled_from(VALUES)),
            st.sampled_from(NOISE)), min_size=1, max_size=8))
        seps = draw(st.lists(st.sampled_from(separators), min_size=len(tokens), max_size=len(tokens)))
        body = "".join(t + s for t, s in zip(tokens, seps, strict=True)) * repeat
        stamp = draw(st.sampled_from(["", "2024-01-01T00:00:00Z ", "[2024-01-01 10:00:00,5] "]))
        lines.append((stamp + body).encode())
    end = draw(st.sampled_from([b"", b"\n", b"\r\n"]))
    return b"\n".join(lines) + end


NAME_SETS = [("loss",), ("loss", "acc"), ()]


@pytest.mark.usefixtures("small_windows")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=long_text_lines("{}={}", SEPARATORS), names=st.sampled_from(NAME_SETS),
       chunk_size=st.sampled_from([7, 64, 333, 1 << 20]))
def test_default_filter_windows_and_blocks_equal_the_per_line_path(data: bytes, names: tuple[str, ...],
                                                                   chunk_size: int) -> None:
    check_same(data, CollectorSpec(metric_names=names), chunk_size)


@pytest.mark.usefixtures("small_windows")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=long_text_lines("{}: {}", [" ", ", ", " | ", "\r", "\t"]), names=st.sampled_from(NAME_SETS),
       chunk_size=st.sampled_from([7, 64, 333, 1 << 20]))
def test_user_filter_windows_equal_the_per_line_path(data: bytes, names: tuple[str, ...], chunk_size: int) -> None:
    check_same(data, CollectorSpec(metric_names=names, filters=(KERAS,)), chunk_size)


def tqdm_line(updates: int) -> tuple[bytes, list[str]]:
    values = [f"{1 + i / 1e5:.4f}" for i in range(updates)]
    line = "".join(f"\rEpoch 1:  12%|####      | {i}/70000 [00:04<00:05, 98.1it/s, loss={v}]"
                   for i, v in enumerate(values))
    return line.encode(), values


@pytest.mark.parametrize("end", [b"", b"\n"])
def test_a_progress_bar_line_counts_every_update_at_the_real_sizes(end: bytes) -> None:
    data, values = tqdm_line(30_000)  # 2.3 MB: three 1 MiB windows
    logs, parser = scanned(b"2024-05-01T10:00:00Z " + data + end, CollectorSpec(metric_names=("loss",)), 1 << 16)
    assert [log.value for log in logs] == values
    assert {log.time_stamp for log in logs} == {"2024-05-01T10:00:00Z"}  # the line's own time stamp
    assert parser.stats.values["loss"] == 30_000 and parser.stats.lines == 1
    assert not parser.stats.skipped


def test_the_template_is_never_learnt_from_a_line_with_too_many_pairs() -> None:
    wanted = {"loss": b"loss"}
    assert LineTemplate.learn(b" ".join(b"loss=%d" % i for i in range(MAX_PAIRS)), wanted) is not None
    assert LineTemplate.learn(b" ".join(b"loss=%d" % i for i in range(MAX_PAIRS + 1)), wanted) is None


def test_a_block_of_long_lines_with_a_newline_is_linear_and_exact() -> None:
    data, values = tqdm_line(3_000)  # one 230 KB line inside a block: the block path, not the windows
    parser = TextParser(CollectorSpec(metric_names=("loss",)))
    logs = BlockParser(parser).parse_block(b"loss=0\n" + data + b"\nloss=9\n")
    assert [log.value for log in logs] == ["0", *values, "9"]


def test_a_json_line_over_the_limit_is_skipped_counted_and_named() -> None:
    skips: list[tuple[int, SkipReason]] = []
    parser = JsonLinesParser(CollectorSpec(metric_names=("loss",), format=FileFormat.JSON),
                             on_skip=lambda skip: skips.append((skip.where, skip.reason)))
    huge = b'{"loss": 1, "pad": "' + b"x" * (3 << 20) + b'"}'
    logs = [log for batch in scan(io.BytesIO(b'{"loss": 0.5}\n' + huge + b'\n{"loss": 2}\n'), parser,
                                  chunk_size=1 << 16) for log in batch]
    assert [log.value for log in logs] == ["0.5", "2"]
    assert skips == [(2, SkipReason.LINE_TOO_LONG)]
    assert parser.stats.lines == 3


def test_a_long_run_without_separators_is_counted_as_a_possible_cut(small_windows: None) -> None:
    parser = TextParser(CollectorSpec(metric_names=("loss",)))
    data = b"loss=1 " + b"a" * 2000 + b"=2 loss=3"
    logs = [log for batch in scan(io.BytesIO(data), parser, chunk_size=50) for log in batch]
    assert [log.value for log in logs] == ["1", "3"]
    assert parser.stats.skipped[SkipReason.LINE_CUT] >= 1  # the 2,000-character name could not be judged whole
