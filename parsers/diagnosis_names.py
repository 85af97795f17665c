"""Close metric names for the diagnosis: case, separators, `val_`/`Validation-` style prefixes, typos (pure).

Also the one verification every suggestion goes through: re-parse the sample with the real line
parser and count the values collected per name.
"""

from __future__ import annotations

import difflib
import io
import re
from collections import Counter
from collections.abc import Iterable

from katib_metrics.parsers.diagnosis import Sample
from katib_metrics.parsers.errors import SpecError
from katib_metrics.parsers.lines import make_line_parser
from katib_metrics.parsers.model import CollectorSpec
from katib_metrics.parsers.stats import ParseStats
from katib_metrics.parsers.stream import scan

__all__ = ["CappedCounter", "Verifier", "count_values", "rank", "similar_names"]

# Leading words that qualify a metric rather than name it; synonyms share a class, so `val_accuracy` and
# `Validation-accuracy` are closer to each other than to `train_accuracy`.
_QUALIFIERS = {
    "val": "val", "valid": "val", "validation": "val", "eval": "eval", "evaluation": "eval", "dev": "val",
    "test": "test", "train": "train", "training": "train", "epoch": "", "batch": "", "step": "",
    "avg": "", "mean": "", "final": "", "best": "",
}
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_FUZZY = 0.85


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(name)]


def _core(name: str) -> tuple[tuple[str, ...], str]:
    """(qualifier classes, the rest squashed): `Validation-Top1Accuracy` → (("val",), "top1accuracy")."""
    words = _words(name)
    classes: list[str] = []
    while len(words) > 1 and words[0] in _QUALIFIERS:
        classes.append(_QUALIFIERS[words.pop(0)])
    return tuple(c for c in classes if c), "".join(words)


def rank(wanted: str, found: str) -> int | None:
    """How close `found` is to `wanted` (0 closest), None when not close at all or the same name."""
    if wanted == found:
        return None
    squash_w, squash_f = "".join(_words(wanted)), "".join(_words(found))
    if not squash_w or not squash_f:
        return None
    if squash_w == squash_f:
        return 0  # case or separators only
    (classes_w, core_w), (classes_f, core_f) = _core(wanted), _core(found)
    if core_w and core_w == core_f:
        return 1 if classes_w == classes_f else 2
    if min(len(squash_w), len(squash_f)) < 4:
        return None
    short, long = sorted((squash_w, squash_f), key=len)
    if long.startswith(short) or long.endswith(short):
        return 3  # a unit suffix (`accuracy_ratio`, Prometheus style) or a qualifier we do not know
    if difflib.SequenceMatcher(None, squash_w, squash_f).ratio() >= _FUZZY:
        return 4  # a typo
    return None


def similar_names(wanted: str, found: Iterable[str], limit: int = 8) -> list[str]:
    """The names of `found` close to `wanted`, closest first (ties in the order given)."""
    ranked = [(r, i, name) for i, name in enumerate(dict.fromkeys(found)) if (r := rank(wanted, name)) is not None]
    return [name for _, _, name in sorted(ranked)[:limit]]


class CappedCounter(Counter[str]):
    """A counter that stops taking new keys past `cap` (memory stays bounded on logs of unique words)."""

    def __init__(self, cap: int = 5000) -> None:
        super().__init__()
        self.cap = cap

    def add(self, key: str, count: int = 1) -> None:
        if key in self or len(self) < self.cap:
            self[key] += count


def count_values(spec: CollectorSpec, sample: Sample, regex_timeout: float = 1.0) -> Counter[str]:
    """Values per name that the real parser collects from `sample` with `spec` (empty for a bad filter)."""
    stats = ParseStats(keep_skips=0)
    try:
        parser = make_line_parser(spec, regex_timeout=regex_timeout, stats=stats)
    except SpecError:
        return Counter()
    for _ in scan(io.BytesIO(sample.data), parser):
        pass
    return stats.values


class Verifier:
    """`count_values` on one sample, remembered per spec: the same re-parse is never done twice."""

    def __init__(self, sample: Sample, regex_timeout: float = 1.0) -> None:
        self.sample, self.regex_timeout = sample, regex_timeout
        self._memo: dict[tuple[object, ...], Counter[str]] = {}

    def __call__(self, spec: CollectorSpec) -> Counter[str]:
        key = (spec.metric_names, spec.filters, spec.format)
        if key not in self._memo:
            self._memo[key] = count_values(spec, self.sample, self.regex_timeout)
        return self._memo[key]
