"""YAML read as Kubernetes reads it: safe types only, no alias bombs, no crash on deep nesting.

PyYAML's `safe_load` shares an aliased node instead of copying it, so a "billion laughs" document loads in
milliseconds, but whatever walks or prints the result expands it: ten levels of ten aliases hold 10^9
values, and one `str()` of such a value in an error message takes gigabytes. Kubernetes' YAML decoder
refuses these documents ("excessive aliasing"); so do we: a document whose values, each alias counted
as a copy, number more than `MAX_VALUES` raises `yaml.YAMLError`, as does an alias inside the node it names
(a value that contains itself) and nesting deeper than the interpreter can follow. Every caller that
already handles `yaml.YAMLError` handles these too. Counting is linear in the document as written.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_VALUES", "load_yaml", "load_yaml_all"]

MAX_VALUES = 1_000_000  # far above any Experiment, KatibConfig or pod (tens of thousands of values at most)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, checked as above."""
    return _checked(lambda: [yaml.safe_load(text)])[0]


def load_yaml_all(text: str) -> list[Any]:
    """Every document of `text` (`yaml.safe_load_all`), checked as above."""
    return _checked(lambda: list(yaml.safe_load_all(text)))


def _checked(load: Any) -> list[Any]:
    try:
        documents: list[Any] = load()
        sizes: dict[int, int] = {}
        total = sum(_expanded(document, sizes, set()) for document in documents)
    except RecursionError:
        raise yaml.YAMLError("document nested too deeply to read (lists or mappings inside each other "
                             "hundreds of levels deep)") from None
    if total > MAX_VALUES:
        raise yaml.YAMLError(f"document contains excessive aliasing: its aliases expand it to more than "
                             f"{MAX_VALUES:,} values; write the values out instead of repeating anchors") from None
    return documents


def _expanded(node: Any, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` holds with every alias copied out; each shared node is counted once."""
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.YAMLError("document contains an alias inside the node it refers to (a value that contains "
                             "itself)")
    open_nodes.add(key)
    children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
    size = 1
    for child in children:
        size += _expanded(child, sizes, open_nodes)
        if size > MAX_VALUES:  # stop counting early: the answer is known
            break
    open_nodes.discard(key)
    sizes[key] = size
    return size
