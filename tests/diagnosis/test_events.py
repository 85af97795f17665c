"""Diagnosis of event directories written by real writers: other directories, non-scalars, merged series."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from katib_metrics.parsers.diagnosis import Diagnosis, diagnose
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricSummary
from katib_metrics.parsers.stats import ParseStats
from katib_metrics.parsers.strategies import reduce_logs
from katib_metrics.parsers.tfevent import read_event_dir

tensorboardx = pytest.importorskip("tensorboardX")
T0 = 1_700_000_000.0


def write(logdir: pathlib.Path, tag: str, values: list[float]) -> None:
    writer = tensorboardx.SummaryWriter(str(logdir))
    for step, value in enumerate(values):
        writer.add_scalar(tag, value, step, walltime=T0 + step)
    writer.close()


def keras_layout(root: pathlib.Path, tag: str = "accuracy") -> None:
    """What Keras's TensorBoard callback writes: one series per directory under the same tag."""
    write(root / "train", tag, [0.5, 0.6, 0.7])
    write(root / "validation", tag, [0.4, 0.5])


def diagnosed(root: pathlib.Path, *names: str) -> list[Diagnosis]:
    spec = CollectorSpec(names, (), FileFormat.TFEVENT)
    summaries: list[MetricSummary] = reduce_logs(spec, read_event_dir(root, spec))
    return diagnose(spec, FileFormat.TFEVENT, str(root), summaries)


def count(root: pathlib.Path, name: str) -> int:
    stats = ParseStats()
    list(read_event_dir(root, CollectorSpec((name,), (), FileFormat.TFEVENT), stats))
    return stats.values[name]


def test_a_bare_name_merging_train_and_validation_is_said_though_it_has_values(tmp_path: pathlib.Path) -> None:
    keras_layout(tmp_path)
    [found] = diagnosed(tmp_path, "accuracy")
    assert found.cause == "merged_directories"
    assert "train (3 values)" in found.evidence and "validation (2 values)" in found.evidence
    assert found.suggestion is not None and found.suggestion.to_dict() == {"metric": "validation/accuracy", "values": 2}


def test_a_tag_under_another_directory(tmp_path: pathlib.Path) -> None:
    keras_layout(tmp_path)
    [found] = diagnosed(tmp_path, "eval/accuracy")
    assert found.cause == "tag_elsewhere"
    assert found.suggestion is not None and found.suggestion.value == "validation/accuracy"
    assert count(tmp_path, "validation/accuracy") == found.suggestion.values == 2


def test_a_tag_written_only_as_a_histogram_lists_the_scalars(tmp_path: pathlib.Path) -> None:
    np = pytest.importorskip("numpy")
    writer = tensorboardx.SummaryWriter(str(tmp_path))
    writer.add_histogram("weights", np.arange(10.0), 0, walltime=T0)
    writer.add_scalar("loss", 0.5, 0, walltime=T0)
    writer.close()
    [found] = diagnosed(tmp_path, "weights")
    assert found.cause == "not_scalar"
    assert "holds no scalar" in found.evidence and "scalar tags: loss" in found.evidence
    assert found.suggestion is None


def test_a_close_tag_is_suggested_once_verified(tmp_path: pathlib.Path) -> None:
    keras_layout(tmp_path, tag="epoch_accuracy")
    [found] = diagnosed(tmp_path, "accuracy")
    assert found.cause == "similar_names"
    assert "validation/epoch_accuracy" in found.evidence
    assert found.suggestion is not None
    assert count(tmp_path, str(found.suggestion.value)) == found.suggestion.values >= 1


def test_a_directory_without_event_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("accuracy=0.5\n")
    [found] = diagnosed(tmp_path, "accuracy")
    assert found.cause == "nothing_read" and "no event files" in found.evidence


def test_an_unrelated_tag_gets_no_suggestion(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "learning_rate", [0.1])
    [found] = diagnosed(tmp_path, "accuracy")
    assert found.cause == "not_found" and found.suggestion is None
    assert "learning_rate" in found.evidence


def test_one_directory_per_name_says_nothing(tmp_path: pathlib.Path) -> None:
    keras_layout(tmp_path)
    assert diagnosed(tmp_path, "train/accuracy", "validation/accuracy") == []


def test_parse_prints_the_merged_directories_and_has_it_in_json(tmp_path: pathlib.Path) -> None:
    keras_layout(tmp_path)
    done = subprocess.run([sys.executable, "-m", "katib_metrics", "parse", str(tmp_path), "-m", "accuracy",
                           "--output", "json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [found] = json.loads(done.stdout)["diagnosis"]
    assert found["cause"] == "merged_directories"
    assert found["suggestion"] == {"metric": "validation/accuracy", "values": 2}
    assert "try: -m validation/accuracy   (verified on the input: collects 2 values)" in done.stderr
