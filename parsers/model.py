"""Shared vocabulary of every stage: metric rows, observation logs, collector specs (frozen, stdlib only)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

UNAVAILABLE = "unavailable"
"""Katib's value for a metric that was never reported (`UnavailableMetricValue`)."""

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time in RFC3339: Katib's time stamp for rows without a time of their own."""

DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
"""Katib's `DefaultFilter`: `name=value` with an optional exponent (RE2 syntax, ASCII classes)."""

DEFAULT_METRICS_FILE = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"


class FileFormat(enum.StrEnum):
    """What a source holds; TEXT and JSON are Katib's `-format` values."""

    TEXT = "TEXT"
    JSON = "JSON"
    TFEVENT = "TFEVENT"
    PROMETHEUS = "PROMETHEUS"


class ObjectiveType(enum.StrEnum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"
    UNKNOWN = ""

    @classmethod
    def parse(cls, text: str | None) -> ObjectiveType:
        """Katib passes the type verbatim; anything but the two known words means "no direction"."""
        if not text:
            return cls.UNKNOWN
        try:
            return cls(text.strip().lower())
        except ValueError:
            return cls.UNKNOWN


class Strategy(enum.StrEnum):
    MIN = "min"
    MAX = "max"
    LATEST = "latest"

    @classmethod
    def default_for(cls, objective: ObjectiveType) -> Strategy:
        """Katib's experiment defaulter: every metric follows the objective's direction."""
        if objective is ObjectiveType.MINIMIZE:
            return cls.MIN
        if objective is ObjectiveType.MAXIMIZE:
            return cls.MAX
        return cls.LATEST


class MetricLog(NamedTuple):
    """One observed value: Katib's `MetricLog{time_stamp, metric{name, value}}` flattened.

    A named tuple rather than a frozen dataclass: parsers create millions of them, and a tuple is built
    several times faster while being just as immutable.
    """

    time_stamp: str
    name: str
    value: str

    def to_dict(self) -> dict[str, Any]:
        """The proto3 field names of `MetricLog`, as `--output json` prints them."""
        return {"time_stamp": self.time_stamp, "metric": {"name": self.name, "value": self.value}}

    @classmethod
    def unavailable(cls, name: str) -> MetricLog:
        return cls(ZERO_TIME, name, UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class ObservationLog:
    metric_logs: tuple[MetricLog, ...] = ()

    @classmethod
    def of(cls, logs: Iterable[MetricLog]) -> ObservationLog:
        return cls(tuple(logs))

    def to_dict(self) -> dict[str, Any]:
        return {"metric_logs": [log.to_dict() for log in self.metric_logs]}


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """One entry of a trial's `status.observation.metrics`, plus the count of values seen."""

    name: str
    min: str = UNAVAILABLE
    max: str = UNAVAILABLE
    latest: str = UNAVAILABLE
    count: int = 0
    strategy: Strategy = Strategy.LATEST

    @property
    def value(self) -> str:
        """What the experiment controller takes for this metric: the strategy's pick, else `latest`."""
        picked = {Strategy.MIN: self.min, Strategy.MAX: self.max, Strategy.LATEST: self.latest}[self.strategy]
        return self.latest if picked == UNAVAILABLE else picked

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "min": self.min,
            "max": self.max,
            "latest": self.latest,
            "strategy": str(self.strategy),
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    """What to collect: Katib's `-m`, `-f`, `-format` and `-o-type` in one value.

    `metric_names[0]` is the objective. An empty `metric_names` means "every metric found"
    (the `parse` command's exploration mode: no objective, no unavailable row). An empty
    `filters` means Katib's default filter.
    """

    metric_names: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    format: FileFormat = FileFormat.TEXT
    objective_type: ObjectiveType = ObjectiveType.UNKNOWN
    strategy_overrides: Mapping[str, Strategy] = field(default_factory=dict)

    @property
    def objective(self) -> str | None:
        return self.metric_names[0] if self.metric_names else None

    def strategy_for(self, name: str) -> Strategy:
        return self.strategy_overrides.get(name, Strategy.default_for(self.objective_type))

    def wants(self, name: str) -> bool:
        return not self.metric_names or name in self.metric_names
