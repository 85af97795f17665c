"""Collected trials read back for `trials` and `show`: rows and spec from the local store or a db-manager."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from katib_metrics.collector.dbmanager.store import ObservationStore, StoreOpenError, TrialInfo, resolve_db_path
from katib_metrics.parsers.model import CollectorSpec, MetricLog, MetricSummary, ObjectiveType
from katib_metrics.parsers.numbers import parse_go_float
from katib_metrics.parsers.observation import batches, unavailable_rows
from katib_metrics.parsers.strategies import Reducer

__all__ = ["ReadError", "StoredRows", "TrialData", "UnknownTrial", "best_first", "existing_db", "load_all",
           "load_local", "load_remote", "objective_value"]


class ReadError(RuntimeError):
    """A db-manager could not be read; the message says which and why."""


class UnknownTrial(LookupError):
    """A trial name with no rows and no record; the message names it and where it was looked for."""


class StoredRows:
    """A trial's rows in the local store, read again in batches each time they are iterated (never all held)."""

    def __init__(self, db_path: Path, trial: str) -> None:
        self.db_path, self.trial = db_path, trial

    def __iter__(self) -> Iterator[MetricLog]:
        store = ObservationStore(self.db_path)
        try:
            for batch in store.batches(self.trial):
                yield from batch
        finally:
            store.close()


@dataclass(frozen=True)
class TrialData:
    """One trial: its rows (a list from a db-manager, `StoredRows` from the local store) and what they are for."""

    name: str
    rows: Iterable[MetricLog]
    spec: CollectorSpec
    info: TrialInfo | None = None

    def all_rows(self) -> Iterator[MetricLog]:
        """The rows with Katib's `unavailable` row for an objective never reported."""
        seen = self._reduction[1]
        yield from self.rows
        yield from unavailable_rows(self.spec, seen)

    def summaries(self) -> list[MetricSummary]:
        """min / max / latest per metric, from one streaming pass over the rows (kept once computed)."""
        return self._reduction[0]

    @cached_property
    def _reduction(self) -> tuple[list[MetricSummary], set[str]]:
        reducer = Reducer(self.spec)
        names: set[str] = set()
        for batch in batches(self.rows, 20_000):
            reducer.add_all(batch)
            names.update(row.name for row in batch)
        reducer.add_all(unavailable_rows(self.spec, names))
        return reducer.summaries(), names


def existing_db(path: str | None) -> Path:
    """The store to read: `--db` must exist (reading never creates one); the default may not exist yet."""
    db_path = resolve_db_path(path)
    if path is not None and not db_path.is_file():
        raise StoreOpenError(f"--db {db_path}: no such file; `katib-metrics run --db {db_path}` creates it")
    return db_path


def load_local(db_path: Path, names: Sequence[str]) -> list[TrialData]:
    """Each named trial of the local store, with the spec `run` recorded for it (else: every metric, latest)."""
    if not db_path.exists():  # reading never creates a store
        raise UnknownTrial(f"no trial {names[0]!r}: there is no local store at {db_path} yet; "
                           "`katib-metrics run -- COMMAND` collects a trial into it")
    store = ObservationStore(db_path)
    try:
        loaded = []
        for name in names:
            info = store.trial(name)
            if info is None and not store.row_count(name):
                known = ", ".join(sorted(i.name for i, _ in store.trials())[:10]) or "none yet"
                raise UnknownTrial(f"no trial {name!r} in {db_path} (trials there: {known}); "
                                   "`katib-metrics trials` lists them")
            loaded.append(TrialData(name, StoredRows(db_path, name), info.spec() if info else CollectorSpec(), info))
        return loaded
    finally:
        store.close()


def load_all(db_path: Path) -> list[tuple[TrialData, int]]:
    """Every trial of the local store and its row count."""
    store = ObservationStore(db_path)
    try:
        return [(TrialData(info.name, StoredRows(db_path, info.name), info.spec(), info), count)
                for info, count in store.trials()]
    finally:
        store.close()


def load_remote(address: str, names: Sequence[str], spec: CollectorSpec, timeout: float) -> list[TrialData]:
    """Each named trial from a db-manager through GetObservationLog (which knows rows, not specs)."""
    from katib_metrics.collector.report import QueryError, get_observation_log  # gRPC only for a db-manager

    loaded = []
    for name in names:
        try:
            rows = get_observation_log(address, name, timeout=timeout)
        except QueryError as err:
            raise ReadError(str(err)) from err
        if not rows:
            raise UnknownTrial(f"db-manager {address} has no rows for trial {name!r}")
        loaded.append(TrialData(name, rows, spec))
    return loaded


def objective_value(trial: TrialData) -> float | None:
    """The objective's value by its strategy as a number (None: no objective or not a number)."""
    objective = trial.spec.objective
    summary = next((s for s in trial.summaries() if s.name == objective), None)
    if summary is None:
        return None
    value = parse_go_float(summary.value)
    return None if value is None or math.isnan(value) else value


def best_first(trials: Sequence[TrialData]) -> list[TrialData]:
    """Best objective first (its own direction per trial), then trials without a direction or value, by name."""

    def key(trial: TrialData) -> tuple[int, float, str]:
        value = objective_value(trial)
        kind = trial.spec.objective_type
        if value is None or kind is ObjectiveType.UNKNOWN:
            return (1, 0.0, trial.name)
        return (0, -value if kind is ObjectiveType.MAXIMIZE else value, trial.name)

    return sorted(trials, key=key)
