"""Early-stopping rules: parse Katib's `-stop-rule`s and decide, value by value, when a trial should stop.

A pure stage between the source and the store (`RuleWatch` wraps any `LogSource`): every MetricLog
read is shown to the `RuleEngine` before it goes on to the store, and the first log after which every
rule holds produces one `Decision`, handed to a callback (the effects live in `collector.stopper`).

Katib's semantics (reference §2.7), with DESIGN difference 13's fixes:

- the objective (first `-m` name) is compared by its best value so far (max for `maximize`, min for
  `minimize`, the first value when there is no type); any other metric by its current value;
- a rule is eligible from its `startStep`-th value of that metric on and stays eligible (Katib
  evaluates it exactly once, at that step);
- a rule that held once stays satisfied; all rules must hold (AND);
- a value that is not a number is skipped and counted (`skipped`), never fatal, and is not a step.
"""

from __future__ import annotations

import difflib
import enum
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from katib_metrics.collector.flags import UsageError
from katib_metrics.parsers.model import MetricLog, ObjectiveType
from katib_metrics.parsers.numbers import format_number, parse_go_float

if TYPE_CHECKING:  # the sources package loads watchdog; settings must stay light
    from katib_metrics.collector.sources.base import LogSource

__all__ = ["DEFAULT_STOP_GRACE", "Comparison", "Decision", "RuleEngine", "RuleWatch", "StopRule", "parse_stop_rules"]

log = logging.getLogger(__name__)

DEFAULT_STOP_GRACE = 10.0
"""Seconds a stopped training may take to exit after SIGTERM before SIGKILL (`--stop-grace`)."""

_NAMES_KEPT = 256  # other metric names remembered for the "did you mean" hint (bounded whatever the input)


class Comparison(enum.StrEnum):
    """Katib's comparison words (the suggestion controller maps its enum to these three)."""

    EQUAL = "equal"
    LESS = "less"
    GREATER = "greater"

    def holds(self, value: float, threshold: float) -> bool:
        if self is Comparison.LESS:
            return value < threshold
        if self is Comparison.GREATER:
            return value > threshold
        return value == threshold

    @property
    def symbol(self) -> str:
        return {Comparison.EQUAL: "==", Comparison.LESS: "<", Comparison.GREATER: ">"}[self]


def _rule_error(text: str, problem: str) -> UsageError:
    return UsageError(f"Invalid Early Stopping rule: {text!r}: {problem} "
                      "(want name;value;comparison;startStep, e.g. accuracy;0.6;less;4)")


@dataclass(frozen=True, slots=True)
class StopRule:
    """One `-stop-rule name;value;comparison;startStep`, checked; `value` is kept as written."""

    name: str
    value: str
    comparison: Comparison
    start_step: int = 0

    @classmethod
    def parse(cls, text: str) -> StopRule:
        """Parse and check one rule; a `UsageError` names the rule and what is wrong with it."""
        parts = text.split(";")
        if len(parts) != 4:
            raise _rule_error(text, f"{len(parts)} part(s) separated by ';', not 4")
        name, value, comparison, step = (part.strip() for part in parts)
        if not name:
            raise _rule_error(text, "the metric name is empty")
        if parse_go_float(value) is None:
            raise _rule_error(text, f"threshold {value!r} is not a number")
        try:
            start_step = int(step, 10)
        except ValueError:
            raise _rule_error(text, f"startStep {step!r} is not an integer") from None
        if start_step < 0:
            raise _rule_error(text, f"startStep {start_step} is negative (0 means from the first value)")
        try:
            kind = Comparison(comparison.lower())
        except ValueError:
            raise _rule_error(text, f"unknown comparison {comparison!r} (use equal, less or greater)") from None
        return cls(name, value, kind, start_step)

    @property
    def threshold(self) -> float:
        parsed = parse_go_float(self.value)
        return math.nan if parsed is None else parsed

    def __str__(self) -> str:
        return f"{self.name};{self.value};{self.comparison};{self.start_step}"


def parse_stop_rules(texts: Iterable[str]) -> tuple[StopRule, ...]:
    """Every repeated `-stop-rule`, in order; the first bad one raises `UsageError`."""
    return tuple(StopRule.parse(text) for text in texts)


@dataclass(frozen=True, slots=True)
class Held:
    """Why one rule holds: the value compared (best so far for the objective) at which report."""

    rule: StopRule
    compared: float
    step: int
    best_so_far: bool

    def __str__(self) -> str:
        what = "best so far" if self.best_so_far else "value"
        return (f"{self.rule.name} {what} {format_number(self.compared)} {self.rule.comparison.symbol} "
                f"{self.rule.value} at report {self.step}")


@dataclass(frozen=True, slots=True)
class Decision:
    """Every rule holds: the trial is to be early-stopped. `trigger` is the value that completed it."""

    held: tuple[Held, ...]
    trigger: MetricLog

    @property
    def rules(self) -> tuple[StopRule, ...]:
        return tuple(h.rule for h in self.held)

    def describe(self) -> str:
        return "; ".join(f"rule {h.rule} holds: {h}" for h in self.held)


@dataclass
class _Metric:
    steps: int = 0
    best: float | None = None


@dataclass
class RuleEngine:
    """The rule state of one trial; `observe` returns the `Decision` once, at the log that completes it."""

    rules: Sequence[StopRule]
    objective: str | None
    objective_type: ObjectiveType = ObjectiveType.UNKNOWN
    skipped: Counter[str] = field(default_factory=Counter)  # per metric: values that were not numbers
    decision: Decision | None = None
    _metrics: dict[str, _Metric] = field(default_factory=dict)
    _held: dict[int, Held] = field(default_factory=dict)  # index in `rules` → why it held (sticky)
    _others: set[str] = field(default_factory=set)  # names of unwatched metrics seen, for hints

    def __post_init__(self) -> None:
        self._watched = {rule.name for rule in self.rules}
        self._thresholds = [rule.threshold for rule in self.rules]

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._watched)

    def observe(self, logs: Iterable[MetricLog]) -> Decision | None:
        """Feed logs in order; the returned decision is new (None before and after it)."""
        if self.decision is not None or not self.rules:
            return None
        for row in logs:
            if row.name not in self._watched:
                if len(self._others) < _NAMES_KEPT:
                    self._others.add(row.name)
            elif self._value(row) and len(self._held) == len(self.rules):
                self.decision = Decision(tuple(self._held[i] for i in range(len(self.rules))), row)
                return self.decision
        return None

    def never_seen(self) -> list[str]:
        """One line per rule whose metric never had a number: it could not hold (a misspelt name, most often)."""
        lines = []
        for rule in self.rules:
            if rule.name in self._metrics:
                continue
            if self.skipped[rule.name]:
                lines.append(f"early-stopping rule {rule} never held: the collection saw "
                             f"{self.skipped[rule.name]} value(s) of {rule.name!r}, none a number")
                continue
            close = difflib.get_close_matches(rule.name, sorted(self._others), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; metrics seen: {', '.join(sorted(self._others)[:10])}" if self._others else "")
            lines.append(f"early-stopping rule {rule} never held: the collection saw no value of {rule.name!r}{hint}")
        return lines

    def _value(self, row: MetricLog) -> bool:
        """Account for one value of a watched metric; True when some rule newly held."""
        value = parse_go_float(row.value)
        if value is None:
            self.skipped[row.name] += 1
            return False
        state = self._metrics.setdefault(row.name, _Metric())
        state.steps += 1
        compared, is_best = value, row.name == self.objective
        if is_best:
            state.best = _better(state.best, value, self.objective_type)
            compared = state.best
        newly = False
        for index, rule in enumerate(self.rules):
            if index in self._held or rule.name != row.name or state.steps < rule.start_step:
                continue
            if rule.comparison.holds(compared, self._thresholds[index]):
                self._held[index] = Held(rule, compared, state.steps, is_best)
                newly = True
        return newly

    def pending(self) -> list[StopRule]:
        """The rules that have not held yet."""
        return [rule for index, rule in enumerate(self.rules) if index not in self._held]


def _better(best: float | None, value: float, kind: ObjectiveType) -> float:
    """Katib's running best: the first value, then max or min by type (NaN never replaces a best)."""
    if best is None:
        return value
    if kind is ObjectiveType.MAXIMIZE and value > best:
        return value
    if kind is ObjectiveType.MINIMIZE and value < best:
        return value
    return best


class RuleWatch:
    """A `LogSource` that shows every log to a `RuleEngine` and calls `on_decision` once, synchronously.

    The callback runs in the reading thread right after the log that completed the rules was read,
    so the decision-to-signal latency is the callback's own; the logs still go on to the store.
    """

    def __init__(self, source: LogSource, engine: RuleEngine, on_decision: Callable[[Decision], None]) -> None:
        self.source = source
        self.engine = engine
        self.on_decision = on_decision
        self._said = False  # rules never seen are named once, at the end

    def _seen(self, logs: Sequence[MetricLog]) -> Sequence[MetricLog]:
        decision = self.engine.observe(logs)
        if decision is not None:
            log.info("early stopping: every rule holds: %s", decision.describe())
            self.on_decision(decision)
        return logs

    def read(self) -> Sequence[MetricLog]:
        return self._seen(self.source.read())

    def flush(self) -> Sequence[MetricLog]:
        """The end of the input (the pipeline's final drain): rules that could never hold are named."""
        logs = self._seen(self.source.flush())
        self._name_rules_never_seen()
        return logs

    def wait(self, timeout: float) -> None:
        self.source.wait(timeout)

    def wake(self) -> None:
        self.source.wake()

    def close(self) -> None:
        self.source.close()
        self._name_rules_never_seen()

    def _name_rules_never_seen(self) -> None:
        if self.engine.decision is None and not self._said:
            for line in self.engine.never_seen():
                log.warning("%s", line)
        self._said = True
