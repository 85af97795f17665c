"""metricsFormat filters: Katib's default-filter table, Go's FindAll semantics, RE2 validation, time bounds."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.parsers.errors import FilterError
from katib_metrics.parsers.filters import (
    DefaultFilter,
    FilterTimeout,
    compile_filters,
    split_katib_filters,
    translate_re2,
)
from katib_metrics.parsers.model import DEFAULT_FILTER

FAR = time.monotonic() + 3600

# Reference §2.4 "Default-filter facts": every row.
DEFAULT_FILTER_TABLE = [
    ("loss=0.3", [("loss", "0.3")]),
    ("accuracy=.98", [("accuracy", ".98")]),
    ("Score=-7.53e-05", [("Score", "-7.53e-05")]),
    ("Score=1E0", [("Score", "1E0")]),
    ("loss=abc", [("loss", "")]),
    ("loss=1.", [("loss", "1")]),
    ("loss=-", [("loss", "-")]),
    ("x|loss=0.5", [("x|loss", "0.5")]),
    ("train-loss = 0.1 loss=0.2", [("train-loss", "0.1"), ("loss", "0.2")]),
    ("epoch 1: loss=0.8, acc=0.9", [("loss", "0.8"), ("acc", "0.9")]),
    ("a=b=3", [("a", ""), ("b", "3")]),
    ("loss=0x10", [("loss", "0")]),
    ("lossé=1", []),
]


def _go_find_all(pattern: re.Pattern[str], line: str) -> list[tuple[str, str]]:
    """A direct transcription of Go's allMatches loop, over Python's engine, as the oracle."""
    found, pos, prev_end = [], 0, -1
    while pos <= len(line):
        match = pattern.search(line, pos)
        if match is None:
            break
        start, stop = match.span()
        accept = True
        if stop == pos:
            accept = start != prev_end
            pos += 1
        else:
            pos = stop
        prev_end = stop
        if accept:
            found.append(((match.group(1) or "").strip(), (match.group(2) or "").strip()))
    return found


ORACLE = re.compile(DEFAULT_FILTER.replace(r"\s", r"[\t\n\f\r ]"), re.ASCII)


@pytest.mark.parametrize(("line", "expected"), DEFAULT_FILTER_TABLE)
def test_default_filter_matches_katibs_table(line: str, expected: list[tuple[str, str]]) -> None:
    assert DefaultFilter().find_all(line, FAR) == expected
    assert _go_find_all(ORACLE, line) == expected


@pytest.mark.parametrize(("line", "expected"), DEFAULT_FILTER_TABLE)
def test_default_filter_given_explicitly_as_user_filter_agrees(line: str, expected: list[tuple[str, str]]) -> None:
    (user,) = compile_filters([DEFAULT_FILTER + "()"])  # a distinct text forces the `regex` engine path
    assert user.find_all(line, FAR) == expected


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab|-_=. 1e+E0\t:,é\v", max_size=24))
def test_fast_default_filter_equals_the_original_regex(line: str) -> None:
    assert DefaultFilter().find_all(line, FAR) == _go_find_all(ORACLE, line)


def test_default_filter_is_linear_on_long_words() -> None:
    line = "a" * 2_000_000 + " loss=0.5"
    started = time.monotonic()
    assert DefaultFilter().find_all(line, FAR) == [("loss", "0.5")]
    assert time.monotonic() - started < 2.0  # Katib's regex on Python's engine is quadratic here


def test_empty_matches_follow_go_rules() -> None:
    (flt,) = compile_filters([r"(a*)(b*)"])
    oracle = re.compile(r"(a*)(b*)")
    for line in ["", "xab", "aab ba", "bbxaa"]:
        assert flt.find_all(line, FAR) == _go_find_all(oracle, line)
    # Go drops the empty match right after "ab" and steps on; Python's finditer would not.
    assert flt.find_all("abx", FAR) == [("a", "b"), ("", "")]


def test_custom_filter_from_katib_examples() -> None:
    (flt,) = compile_filters([r"([\w|-]+)\s*:\s*((-?\d+)(\.\d+)?)"])
    assert flt.find_all("epoch 3 val_loss: 0.89 accuracy : 12", FAR) == [("val_loss", "0.89"), ("accuracy", "12")]


def test_re2_space_class_excludes_vertical_tab() -> None:
    (flt,) = compile_filters([r"(\w+)\s*=\s*(\d+)"])
    assert flt.find_all("a =\t1", FAR) == [("a", "1")]
    assert flt.find_all("a\v=1", FAR) == []


def test_ascii_classes() -> None:
    (flt,) = compile_filters([r"(\w+)=(\d+)"])
    assert flt.find_all("é=1 x=٣ y=2", FAR) == [("y", "2")]


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("(a", "does not compile"),
        (r"(\w+)", "1 capture group"),
        ("no groups", "0 capture group"),
        (r"(?=x)(a)(b)", "lookahead"),
        (r"(?<!x)(a)(b)", "negative lookbehind"),
        (r"(a)(b)\1", "backreference"),
        (r"(a)(?P<v>b)(?P=v)", "named backreference"),
        (r"(a++)(b)", "possessive"),
        (r"(?>a)(a)(b)", "atomic"),
    ],
)
def test_bad_filters_are_rejected_naming_the_pattern(pattern: str, problem: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filters([pattern])
    assert pattern in str(info.value)
    assert problem in str(info.value)


def test_translation_keeps_classes_and_escapes() -> None:
    assert translate_re2(r"[\s\d]") == r"[\t\n\f\r \d]"
    assert translate_re2(r"a\z") == r"a\Z"
    assert translate_re2(r"[]\s]") == "[]\\t\\n\\f\\r ]"
    assert translate_re2(r"\\s") == r"\\s"


def test_split_katib_filters() -> None:
    assert split_katib_filters("") == ()
    assert split_katib_filters(r"(\w+)=(\d+);(\w+):(\d+)") == (r"(\w+)=(\d+)", r"(\w+):(\d+)")


def test_no_filters_means_the_default_filter() -> None:
    (flt,) = compile_filters([])
    assert isinstance(flt, DefaultFilter)


def test_pathological_pattern_times_out() -> None:
    (flt,) = compile_filters([r"((a|a)+)(b)"])
    started = time.monotonic()
    with pytest.raises(FilterTimeout):
        flt.find_all("a" * 40, time.monotonic() + 0.2)
    assert time.monotonic() - started < 2.0
