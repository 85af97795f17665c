"""YAML read as Kubernetes reads it: alias bombs, values that contain themselves and deep nesting are one-line
errors, in bounded time and memory, and every other document reads exactly as `yaml.safe_load` reads it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.injector.config import load_katib_config
from katib_metrics.injector.errors import ConfigError
from katib_metrics.parsers.experiment import ExperimentError
from katib_metrics.parsers.experiment_file import load_experiment
from katib_metrics.parsers.safeyaml import MAX_VALUES, load_yaml, load_yaml_all
from tests import peak


def bomb(levels: int, width: int = 10) -> str:
    """The "billion laughs": each level a list of `width` aliases of the level below."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def expanded_count(node: Any) -> int:
    """The oracle: every value counted by walking the document with aliases copied out (small documents)."""
    if isinstance(node, dict):
        return 1 + sum(expanded_count(k) + expanded_count(v) for k, v in node.items())
    if isinstance(node, list):
        return 1 + sum(map(expanded_count, node))
    return 1


def test_an_alias_bomb_is_refused_quickly_whatever_its_size() -> None:
    for levels in (7, 9, 12):  # 10^7 .. 10^12 values once expanded
        started = time.process_time()
        with pytest.raises(yaml.YAMLError, match=r"excessive aliasing: .* more than 1,000,000 values"):
            load_yaml(bomb(levels))
        assert time.process_time() - started < 5


def test_a_bomb_in_an_experiment_file_is_a_one_line_error_in_bounded_memory(tmp_path: Path) -> None:
    """`check` on this file used to take 4.6 GB and never end (the peak is the `check` process's own)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9) + "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata: {name: x}\n"
                              "spec: {objective: {type: maximize, objectiveMetricName: *l8}}\n")
    run = peak.measured(tmp_path, "check", str(path), timeout=60)
    assert run.code == 2 and run.peak_mib < 100, (run.code, run.peak_mib)
    assert run.stderr.strip().splitlines()[-1] == (
        f"katib-metrics check: error: {path}: not valid YAML or JSON: document contains excessive aliasing: its "
        "aliases expand it to more than 1,000,000 values; write the values out instead of repeating anchors")


def test_a_value_that_contains_itself_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="alias inside the node it refers to"):
        load_yaml("a: &a [1, *a]\n")
    with pytest.raises(yaml.YAMLError, match="alias inside the node it refers to"):
        load_yaml_all("x: 1\n---\nb: &b {c: *b}\n")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_is_a_one_line_error_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"spec": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ExperimentError, match=rf"{path.name}: not valid YAML or JSON: document nested too deeply"):
        load_experiment(str(path))


def test_anchors_used_for_reuse_read_as_written() -> None:
    """Real manifests repeat an env list or resources block with anchors: nowhere near the limit."""
    text = ("common: &env [{name: A, value: '1'}, {name: B, value: '2'}]\n"
            "containers:\n" + "".join(f"- {{name: c{i}, env: *env}}\n" for i in range(200)))
    document = load_yaml(text)
    assert document == yaml.safe_load(text) and len(document["containers"]) == 200


def test_the_limit_is_on_the_expanded_count_not_the_text() -> None:
    width = 1000  # 1 + 1000 * (1 + 999) values: just over the limit with 1,000 aliases of one list
    text = "a: &a [" + ", ".join(["x"] * (width - 1)) + "]\nb: [" + ", ".join(["*a"] * width) + "]\n"
    assert expanded_count(yaml.safe_load(text)) > MAX_VALUES
    with pytest.raises(yaml.YAMLError, match="excessive aliasing"):
        load_yaml(text)
    fewer = "a: &a [" + ", ".join(["x"] * (width - 1)) + "]\nb: [" + ", ".join(["*a"] * (width - 5)) + "]\n"
    assert expanded_count(yaml.safe_load(fewer)) <= MAX_VALUES and load_yaml(fewer) == yaml.safe_load(fewer)


def test_a_katib_config_with_a_bomb_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="katib-config: not valid YAML: document contains excessive aliasing"):
        load_katib_config(bomb(9) + "runtime: {metricsCollectors: *l8}\n")


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                     max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(trees, min_size=1, max_size=3), st.data())
def test_documents_with_shared_nodes_read_as_pyyaml_reads_them(parts: list[Any], data: st.DataObject) -> None:
    """`safe_dump` writes anchors and aliases for shared nodes: reused parts become aliases in the text."""
    uses = data.draw(st.lists(st.integers(0, len(parts) - 1), min_size=1, max_size=8))
    document = {"parts": [parts[i] for i in uses]}
    text = yaml.safe_dump(document)
    assert load_yaml(text) == yaml.safe_load(text)
    assert load_yaml_all(text + "---\n" + text) == list(yaml.safe_load_all(text + "---\n" + text))


def test_checking_a_large_plain_document_is_linear() -> None:
    text = yaml.safe_dump({"items": [{"name": f"n{i}", "values": list(range(20))} for i in range(2_000)]})
    started = time.process_time()
    load_yaml(text)
    checked = time.process_time() - started
    started = time.process_time()
    yaml.safe_load(text)
    assert checked < 1.5 * (time.process_time() - started) + 0.5  # loading dominates; the count is a walk
