"""pytest plugin (entry point `pytest11`): the `katib_metrics` fixture checks a training's metrics in tests.

    def test_my_training_reports_its_objective(katib_metrics):
        observation = katib_metrics.run(["python", "train.py", "--epochs", "1"], metrics=["accuracy"])
        katib_metrics.assert_collected(observation, "accuracy")

A failed `assert_collected` says why the metric is unavailable, with a fix verified on the same output.
Every pytest session of an environment with this package loads the plugin: importing it costs nothing more
than pytest itself; `katib_metrics.testing` and the parsers are imported when a test first uses the fixture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from katib_metrics.testing import Observation

__all__ = ["KatibMetrics", "katib_metrics"]


class KatibMetrics:
    """The fixture's value: `collect`, `collect_text`, `run`, `assert_collected` of `katib_metrics.testing`.

    `experiment` (a Katib Experiment or Trial file), when set, gives every call its spec (arguments win).
    """

    def __init__(self, experiment: str | os.PathLike[str] | None = None) -> None:
        self.experiment = experiment

    def _spec_args(self, spec_args: dict[str, object]) -> dict[str, object]:
        if self.experiment is not None:
            spec_args.setdefault("experiment", self.experiment)
        return spec_args

    def collect(self, path: str | os.PathLike[str], metrics: Sequence[str] = (), **spec_args: object) -> Observation:
        """A log file or event directory, as the collector would read it."""
        from katib_metrics import testing

        return testing.collect(path, metrics, **self._spec_args(spec_args))

    def collect_text(self, text: str | bytes, metrics: Sequence[str] = (), **spec_args: object) -> Observation:
        """A log given as a string."""
        from katib_metrics import testing

        return testing.collect_text(text, metrics, **self._spec_args(spec_args))

    def run(self, command: Sequence[str], metrics: Sequence[str] = (), **options: object) -> Observation:
        """Run a training command and collect its output (or `path=`)."""
        from katib_metrics import testing

        return testing.run_training(command, metrics, **self._spec_args(options))  # type: ignore[arg-type]

    def assert_collected(self, observation: Observation, *names: str, at_least: int = 1) -> None:
        """Fail with the diagnosis unless each metric has `at_least` values."""
        __tracebackhide__ = True  # the failure is the message, not this frame
        from katib_metrics import testing

        testing.assert_collected(observation, *names, at_least=at_least)


@pytest.fixture
def katib_metrics() -> KatibMetrics:
    """Collect a log, a string or a training command's output as Katib's collector would, and assert on it."""
    return KatibMetrics()
