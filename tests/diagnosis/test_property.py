"""Property: every suggestion a diagnosis makes, applied to the same input, collects what it says (≥ 1 value)."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.diagnosis import Diagnosis, Suggestion, diagnose
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import CollectorSpec, FileFormat
from katib_metrics.parsers.stats import ParseStats
from katib_metrics.parsers.strategies import reduce_logs
from katib_metrics.parsers.stream import scan

NAMES = ["accuracy", "val_accuracy", "Validation-accuracy", "Accuracy", "loss", "val-loss", "lr", "train/loss"]
WANTED = [*NAMES, "acc", "top1", "val_loss", "eval/accuracy"]
SEPARATORS = ["=", " = ", ": ", ":", " ", " -> ", " is ", "=["]
VALUES = ["0.5", "1e-3", "-2", ".25", "2.5e-05", "nan", "91%", "abc", "", "0.9133"]
NOISE = ["", "epoch 3 - ", "INFO ", "2024-03-04T01:55:10Z ", "[rank0] ", "1875/1875 - 3s - "]
FILTERS = [(), (r"([\w-]+)=([+-]?\d*\.?\d+)",), (r"(\w+):\s*(\S+)",), (r'"(\w+)":\s*([\d.]+)',)]

pair = st.tuples(st.sampled_from(NAMES), st.sampled_from(SEPARATORS), st.sampled_from(VALUES))
text_line = st.tuples(st.sampled_from(NOISE), st.lists(pair, min_size=0, max_size=3)).map(
    lambda parts: parts[0] + " - ".join(f"{n}{s}{v}" for n, s, v in parts[1]))
json_line = st.dictionaries(st.sampled_from(NAMES), st.sampled_from([0.5, "0.5", "abc", None, {"accuracy": 1}]),
                            max_size=3).map(json.dumps) | st.sampled_from(["not json", "[1, 2]", ""])


def collected(spec: CollectorSpec, data: bytes) -> ParseStats:
    stats = ParseStats()
    for _ in scan(io.BytesIO(data), make_line_parser(spec, stats=stats)):
        pass
    return stats


def applied(spec: CollectorSpec, metric: str, suggestion: Suggestion) -> tuple[CollectorSpec, str]:
    if suggestion.setting == "metricsFormat":
        assert isinstance(suggestion.value, tuple)
        return CollectorSpec(spec.metric_names, suggestion.value, FileFormat.TEXT), metric
    if suggestion.setting == "format":
        return CollectorSpec(spec.metric_names, (), FileFormat(suggestion.value)), metric
    assert suggestion.setting == "metric" and isinstance(suggestion.value, str)
    names = tuple(suggestion.value if name == metric else name for name in spec.metric_names)
    return CollectorSpec(names, spec.filters, spec.format), suggestion.value


def check(spec: CollectorSpec, data: bytes) -> list[Diagnosis]:
    summaries = reduce_logs(spec, (log for logs in scan(io.BytesIO(data), make_line_parser(spec)) for log in logs))
    found = diagnose(spec, spec.format, "-", summaries, data=data)
    for diagnosis in found:
        if diagnosis.suggestion is None:
            continue
        new_spec, name = applied(spec, diagnosis.metric, diagnosis.suggestion)
        values = collected(new_spec, data).values
        got = values[name] if name else sum(values.values())
        assert got == diagnosis.suggestion.values >= 1, (diagnosis, data)
    return found


@settings(max_examples=150, deadline=None)
@given(st.lists(text_line, max_size=8), st.lists(st.sampled_from(WANTED), max_size=2, unique=True),
       st.sampled_from(FILTERS))
def test_text_suggestions_re_parse_to_what_they_promise(lines: list[str], wanted: list[str],
                                                        filters: tuple[str, ...]) -> None:
    spec = CollectorSpec(tuple(wanted), filters, FileFormat.TEXT)
    found = check(spec, "\n".join(lines).encode())
    assert {d.metric for d in found} <= {*wanted, ""}


@settings(max_examples=100, deadline=None)
@given(st.lists(json_line, max_size=6), st.lists(st.sampled_from(WANTED), min_size=1, max_size=2, unique=True))
def test_json_suggestions_re_parse_to_what_they_promise(lines: list[str], wanted: list[str]) -> None:
    check(CollectorSpec(tuple(wanted), (), FileFormat.JSON), "\n".join(lines).encode())


@settings(max_examples=60, deadline=None)
@given(st.lists(text_line, min_size=1, max_size=6), st.sampled_from(NAMES))
def test_a_metric_that_has_values_gets_no_diagnosis(lines: list[str], name: str) -> None:
    data = ("\n".join(lines) + f"\n{name}=0.5\n").encode()
    spec = CollectorSpec((name,), (), FileFormat.TEXT)
    if "/" not in name:  # Katib's default filter has no `/` in names
        assert check(spec, data) == []
