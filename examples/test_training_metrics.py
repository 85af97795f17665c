"""A training project's own test of its metrics, with the `katib_metrics` pytest fixture (README example).

Run: python3 -m pytest -q examples/test_training_metrics.py
"""

import sys
from pathlib import Path

from katib_metrics.pytest_plugin import KatibMetrics

HERE = Path(__file__).resolve().parent
KERAS_FORMAT = r"([\w-]+):\s*([+-]?\d*\.?\d+(?:[eE][+-]?\d+)?)"


def test_the_training_reports_its_objective(katib_metrics: KatibMetrics) -> None:
    observation = katib_metrics.run([sys.executable, str(HERE / "train.py"), "--epochs", "3", "--seconds", "0.3"],
                                    ["accuracy", "loss"], objective_type="maximize")
    assert observation.returncode == 0
    katib_metrics.assert_collected(observation, at_least=3)  # fails with the diagnosis if not
    assert 0 < (observation.value("accuracy") or 0) <= 1  # the value Katib would take: max, as the objective maximizes


def test_the_keras_log_needs_its_metrics_format(katib_metrics: KatibMetrics) -> None:
    observation = katib_metrics.collect(HERE / "logs" / "keras.log", ["val_accuracy"], filters=[KERAS_FORMAT])
    katib_metrics.assert_collected(observation, "val_accuracy", at_least=3)
    assert observation.values("val_accuracy") == [0.9575, 0.9667, 0.9712]
