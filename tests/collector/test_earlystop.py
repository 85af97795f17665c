"""The early-stopping rule engine: rule parsing, start steps, best-so-far, AND, unparsable values."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katib_metrics.collector.earlystop import Comparison, Decision, RuleEngine, RuleWatch, StopRule, parse_stop_rules
from katib_metrics.collector.flags import UsageError, parse_sidecar_flags
from katib_metrics.collector.lifecycle import ProcessInfo
from katib_metrics.collector.settings import resolve_settings
from katib_metrics.collector.stopper import descendants, write_marker
from katib_metrics.parsers.model import MetricLog, ObjectiveType
from katib_metrics.parsers.numbers import format_number


def logs(name: str, *values: str) -> list[MetricLog]:
    return [MetricLog(f"2024-01-01T00:00:{i:02d}Z", name, v) for i, v in enumerate(values)]


def stop_index(engine: RuleEngine, rows: list[MetricLog]) -> int | None:
    """The 0-based index of the row at which the engine decides, feeding one row at a time."""
    for index, row in enumerate(rows):
        if engine.observe([row]) is not None:
            return index
    return None


@pytest.mark.parametrize(("text", "want"), [
    ("accuracy;0.6;less;4", StopRule("accuracy", "0.6", Comparison.LESS, 4)),
    ("loss;2;greater;0", StopRule("loss", "2", Comparison.GREATER, 0)),
    ("loss;1e-3;equal;1", StopRule("loss", "1e-3", Comparison.EQUAL, 1)),
    ("acc;0x1p-2;LESS;2", StopRule("acc", "0x1p-2", Comparison.LESS, 2)),
])
def test_rules_parse(text: str, want: StopRule) -> None:
    assert StopRule.parse(text) == want
    assert str(StopRule.parse(text)).split(";")[::3] == text.split(";")[::3]


@pytest.mark.parametrize(("text", "problem"), [
    ("accuracy;0.6;less", "3 part(s)"),
    ("accuracy;0.6;less;4;5", "5 part(s)"),
    ("accuracy;abc;less;4", "threshold 'abc' is not a number"),
    ("accuracy; 0.6;less;4x", "startStep '4x' is not an integer"),
    ("accuracy;0.6;less;1.5", "startStep '1.5' is not an integer"),
    ("accuracy;0.6;lower;4", "unknown comparison 'lower'"),
    ("accuracy;0.6;less;-1", "negative"),
    (";0.6;less;1", "name is empty"),
])
def test_invalid_rules_are_usage_errors_naming_the_rule(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        StopRule.parse(text)
    assert repr(text) in str(caught.value) and problem in str(caught.value)


def test_sidecar_flags_reject_a_bad_rule_before_anything_runs() -> None:
    argv = ["-t", "t1", "-m", "accuracy", "-s-db", "db:6789", "-path", "/tmp/nowhere/metrics.log",
            "-stop-rule", "accuracy;0.6;less;4", "-stop-rule", "accuracy;0.6;les;4"]
    with pytest.raises(UsageError, match=re.escape("'accuracy;0.6;les;4'")):
        resolve_settings(parse_sidecar_flags(argv), {})


# Start steps: evaluated from the startStep-th value on (Katib: only at exactly that value).
@pytest.mark.parametrize(("start", "values", "stops_at"), [
    (0, ["0.1"], 0),
    (1, ["0.1"], 0),
    (3, ["0.1", "0.1", "0.1"], 2),
    (3, ["0.9", "0.9", "0.9", "0.1"], 3),  # Katib never evaluates again after step 3
    (3, ["0.9", "0.9", "0.9", "0.9", "0.9", "0.2"], 5),
    (4, ["0.1", "0.1", "0.1"], None),
])
def test_start_step(start: int, values: list[str], stops_at: int | None) -> None:
    engine = RuleEngine([StopRule("loss", "0.5", Comparison.LESS, start)], "accuracy")
    assert stop_index(engine, logs("loss", *values)) == stops_at


@pytest.mark.parametrize(("kind", "values", "stops_at"), [
    # maximize: the best so far is the max; it must fall below 0.5 — a later low value cannot.
    (ObjectiveType.MAXIMIZE, ["0.3", "0.6", "0.2", "0.1"], 0),
    (ObjectiveType.MAXIMIZE, ["0.6", "0.2", "0.1", "0.1"], None),
    # minimize with `greater`: the best so far is the min.
    (ObjectiveType.MINIMIZE, ["0.4", "0.9", "0.9"], None),
    (ObjectiveType.MINIMIZE, ["0.9", "0.8", "0.7"], 0),
    # no type: the first value, forever.
    (ObjectiveType.UNKNOWN, ["0.6", "0.1", "0.1"], None),
])
def test_objective_is_compared_by_its_best_so_far(kind: ObjectiveType, values: list[str],
                                                   stops_at: int | None) -> None:
    comparison = Comparison.LESS if kind is not ObjectiveType.MINIMIZE else Comparison.GREATER
    rule = StopRule("accuracy", "0.5", comparison, 0)
    engine = RuleEngine([rule], "accuracy", kind)
    assert stop_index(engine, logs("accuracy", *values)) == stops_at


def test_best_so_far_with_a_start_step_uses_every_earlier_value() -> None:
    engine = RuleEngine([StopRule("accuracy", "0.5", Comparison.LESS, 3)], "accuracy", ObjectiveType.MAXIMIZE)
    assert stop_index(engine, logs("accuracy", "0.7", "0.1", "0.1", "0.1")) is None
    engine = RuleEngine([StopRule("accuracy", "0.5", Comparison.LESS, 3)], "accuracy", ObjectiveType.MAXIMIZE)
    decision_at = stop_index(engine, logs("accuracy", "0.4", "0.45", "0.3"))
    assert decision_at == 2
    assert engine.decision is not None
    held = engine.decision.held[0]
    assert (held.compared, held.step, held.best_so_far) == (0.45, 3, True)
    assert "rule accuracy;0.5;less;3 holds: accuracy best so far 0.45 < 0.5 at report 3" in engine.decision.describe()


def test_other_metrics_use_their_current_value() -> None:
    engine = RuleEngine([StopRule("loss", "1", Comparison.GREATER, 0)], "accuracy", ObjectiveType.MAXIMIZE)
    assert stop_index(engine, logs("loss", "0.5", "0.7", "1.5")) == 2
    assert engine.decision is not None and not engine.decision.held[0].best_so_far


def test_all_rules_must_hold_and_a_held_rule_stays_held() -> None:
    rules = [StopRule("accuracy", "0.5", Comparison.LESS, 2), StopRule("loss", "2", Comparison.GREATER, 0)]
    engine = RuleEngine(rules, "accuracy", ObjectiveType.MAXIMIZE)
    rows = [MetricLog("t", "loss", "3"),       # loss holds (sticky from here on)
            MetricLog("t", "accuracy", "0.2"),  # step 1 of 2: not yet eligible
            MetricLog("t", "loss", "1"),       # loss no longer > 2, but it held once
            MetricLog("t", "accuracy", "0.3")]  # step 2: best 0.3 < 0.5 → both hold
    assert stop_index(engine, rows) == 3
    assert engine.decision is not None and engine.decision.trigger == rows[3]
    assert [h.rule.name for h in engine.decision.held] == ["accuracy", "loss"]
    assert engine.observe([MetricLog("t", "accuracy", "0.1")]) is None  # decided once only


def test_two_rules_on_one_metric_are_both_evaluated() -> None:
    # Katib's JSON loop skips the rule swapped in after a deletion (§9 item 13); both must count here.
    rules = parse_stop_rules(["loss;0.5;greater;0", "loss;0.9;less;0"])
    engine = RuleEngine(rules, "accuracy")
    assert stop_index(engine, logs("loss", "0.7")) == 0


def test_values_that_never_parse_are_skipped_counted_and_not_steps() -> None:
    engine = RuleEngine([StopRule("loss", "0.5", Comparison.LESS, 2)], "accuracy")
    rows = logs("loss", "abc", "", "nope", "0.1", "unavailable", "0.2")
    assert stop_index(engine, rows) == 5  # steps: 0.1 is the 1st value, 0.2 the 2nd
    assert engine.skipped["loss"] == 4


def test_a_value_that_never_parses_never_stops() -> None:
    engine = RuleEngine([StopRule("loss", "0.5", Comparison.LESS, 0)], "accuracy")
    assert stop_index(engine, logs("loss", *["x"] * 50)) is None
    assert engine.skipped["loss"] == 50 and engine.pending() == list(engine.rules)


def test_nan_never_replaces_the_best_and_never_holds() -> None:
    engine = RuleEngine([StopRule("acc", "0.5", Comparison.GREATER, 0)], "acc", ObjectiveType.MINIMIZE)
    assert stop_index(engine, logs("acc", "0.9", "NaN", "0.2")) == 0
    engine = RuleEngine([StopRule("acc", "0.5", Comparison.LESS, 0)], "acc", ObjectiveType.MAXIMIZE)
    assert stop_index(engine, logs("acc", "NaN")) is None


def test_equal_is_exact_float_equality() -> None:
    engine = RuleEngine([StopRule("loss", "0.10", Comparison.EQUAL, 0)], "acc")
    assert stop_index(engine, logs("loss", "0.1000001", "1e-1")) == 1


def test_without_rules_nothing_is_decided() -> None:
    assert RuleEngine([], "acc").observe(logs("acc", "1")) is None


class ListSource:
    def __init__(self, batches: list[list[MetricLog]]) -> None:
        self.batches = batches
        self.closed = False

    def read(self) -> list[MetricLog]:
        return self.batches.pop(0) if self.batches else []

    def flush(self) -> list[MetricLog]:
        return []

    def wait(self, timeout: float) -> None:
        return None

    def wake(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def test_rule_watch_passes_every_log_on_and_decides_once() -> None:
    rows = logs("loss", "0.9", "0.1", "0.05")
    decisions: list[Decision] = []
    engine = RuleEngine([StopRule("loss", "0.5", Comparison.LESS, 0)], "acc")
    watch = RuleWatch(ListSource([rows[:2], rows[2:]]), engine, decisions.append)
    assert watch.read() == rows[:2] and watch.read() == rows[2:] and watch.read() == []
    assert len(decisions) == 1 and decisions[0].trigger == rows[1]
    watch.close()


values = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(values, min_size=1, max_size=40), st.integers(0, 45), values,
       st.sampled_from([ObjectiveType.MAXIMIZE, ObjectiveType.MINIMIZE]))
def test_property_the_decision_matches_a_direct_computation(series: list[float], start: int, threshold: float,
                                                            kind: ObjectiveType) -> None:
    comparison = Comparison.LESS if kind is ObjectiveType.MAXIMIZE else Comparison.GREATER
    rule = StopRule("obj", format_number(threshold), comparison, start)
    engine = RuleEngine([rule], "obj", kind)
    got = stop_index(engine, [MetricLog("t", "obj", format_number(v)) for v in series])
    pick = max if kind is ObjectiveType.MAXIMIZE else min
    want = next((i for i in range(len(series)) if i + 1 >= start
                 and comparison.holds(pick(series[: i + 1]), threshold)), None)
    assert got == want


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), values), max_size=30))
def test_property_and_of_rules_is_the_later_of_their_own_decisions(rows: list[tuple[str, float]]) -> None:
    rules = [StopRule("a", "0", Comparison.GREATER, 2), StopRule("b", "0", Comparison.LESS, 1)]
    logs_ = [MetricLog("t", name, format_number(v)) for name, v in rows]
    alone = [stop_index(RuleEngine([rule], "obj"), logs_) for rule in rules]
    both = stop_index(RuleEngine(rules, "obj"), logs_)
    assert both == (None if None in alone else max(i for i in alone if i is not None))


def test_threshold_property_and_symbol() -> None:
    assert StopRule.parse("a;Inf;less;0").threshold == math.inf
    assert Comparison.GREATER.symbol == ">"


def test_descendants_walks_the_whole_tree_parents_first() -> None:
    table = [ProcessInfo(pid, ppid, "x", "x") for pid, ppid in
             [(10, 1), (11, 10), (12, 10), (13, 11), (14, 13), (20, 1), (21, 20), (10, 14)]]
    assert descendants(table, 10) == [11, 12, 13, 14]  # a bogus cycle back to 10 is not followed
    assert descendants(table, 20) == [21] and descendants(table, 99) == []


def test_the_marker_is_replaced_whole(tmp_path: Path) -> None:
    (tmp_path / "42.pid").write_text("something else, longer than the marker\n")
    assert write_marker(tmp_path, 42).read_bytes() == b"early-stopped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["42.pid"]


def test_a_rule_on_a_metric_never_seen_says_so_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    rules = [StopRule("acuracy", "0.6", Comparison.LESS, 1), StopRule("lr", "1", Comparison.LESS, 0),
             StopRule("loss", "9", Comparison.LESS, 0)]
    engine = RuleEngine(rules, "accuracy")
    engine.observe(logs("accuracy", "0.5", "0.4") + logs("lr", "x", "y") + logs("loss", "1"))
    watch = RuleWatch(_Empty(), engine, lambda decision: None)
    with caplog.at_level("WARNING"):
        watch.close()
        watch.close()  # said once
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "early-stopping rule acuracy;0.6;less;1 never held: the collection saw no value of 'acuracy'; "
        "did you mean 'accuracy'?",
        "early-stopping rule lr;1;less;0 never held: the collection saw 2 value(s) of 'lr', none a number"]
    # The names kept for the hint are bounded whatever the input.
    many = RuleEngine([StopRule("a", "1", Comparison.LESS, 0)], "a")
    many.observe(MetricLog("t", f"m{i}", "1") for i in range(10_000))
    assert "metrics seen: m0, m1, m10" in many.never_seen()[0] and len(many._others) <= 256


class _Empty:
    """A source with nothing to read (only closed)."""

    def read(self) -> list[MetricLog]:
        return []

    def flush(self) -> list[MetricLog]:
        return []

    def wait(self, timeout: float) -> None:
        return None

    def wake(self) -> None:
        return None

    def close(self) -> None:
        return None
