"""Diagnosis of TensorFlow event directories: tags under another directory, non-scalar tags, merged series (pure).

Lists every scalar tag per directory (and the tags written only as non-scalar summaries) by reading at
most `max_bytes` of event records, then explains each unavailable metric; and, though a bare metric
name has values, says when it matched series in several directories (`train/` and `validation/`
merged into one). Suggestions are verified with the real reader (`read_event_dir`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from katib_metrics.parsers.diagnosis import ANY_METRIC, Diagnosis, Suggestion, unavailable_names
from katib_metrics.parsers.diagnosis_names import similar_names
from katib_metrics.parsers.model import CollectorSpec, FileFormat, MetricSummary
from katib_metrics.parsers.stats import ParseStats

__all__ = ["EventTags", "diagnose_events", "read_tags"]

DEFAULT_EVENT_BYTES = 64 << 20
_MAX_TAGS = 2000
_CHUNK = 1 << 20
_PREFERRED_DIRS = ("validation", "val", "valid", "eval", "test")


@dataclass
class EventTags:
    """What an event directory holds: scalar values per tag and directory, tags that are not scalars."""

    files: int = 0
    events: int = 0
    scalars: dict[str, Counter[str]] = field(default_factory=dict)  # tag → directory → values
    non_scalars: dict[str, tuple[str, str]] = field(default_factory=dict)  # tag → (directory, why)

    def names(self) -> list[str]:
        """Every scalar as `parse` reports it without -m: `dir/tag`, or the tag for the top directory."""
        return [f"{d}/{tag}" if d else tag for tag, dirs in self.scalars.items() for d in dirs]


def read_tags(root: str, max_bytes: int = DEFAULT_EVENT_BYTES) -> EventTags:
    """The tags of the event files under `root`, reading at most `max_bytes` of them, a chunk at a time."""
    from katib_metrics.parsers.tfevent import list_event_files

    found = EventTags()
    budget = max_bytes
    for relpath, _size in list_event_files(root):
        found.files += 1
        if budget > 0:
            try:
                budget -= _read_file_tags(os.path.join(root, relpath), relpath.rpartition("/")[0], budget, found)
            except OSError:
                continue
    return found


def _read_file_tags(path: str, reldir: str, budget: int, found: EventTags) -> int:
    """Add the tags of one file's first `budget` bytes to `found`; the bytes read."""
    from katib_metrics.parsers.tfdecode import decode_records
    from katib_metrics.parsers.tfrecord import scan_records

    read, carry, resyncing = 0, b"", False
    with open(path, "rb") as stream:
        while read < budget and (chunk := stream.read(min(_CHUNK, budget - read))):
            read += len(chunk)
            buf = carry + chunk if carry else chunk
            scan = scan_records(buf, resyncing=resyncing)
            carry, resyncing = buf[scan.resume :], scan.resyncing
            decoded = decode_records(scan.records, {}, lambda tag: (tag,), buf, scan.runs)
            found.events += decoded.events
            for (tag,) in decoded.names:
                if tag in found.scalars or len(found.scalars) < _MAX_TAGS:
                    found.scalars.setdefault(tag, Counter())[reldir] += 1
            for _, tag, why in decoded.not_scalars:
                found.non_scalars.setdefault(tag, (reldir, why))
    return read


def _count(root: str, name: str) -> int:
    """Values of `name` the real reader collects (the verification of a suggestion)."""
    from katib_metrics.parsers.tfevent import read_event_dir

    stats = ParseStats(keep_skips=0)
    for _ in read_event_dir(root, CollectorSpec((name,), (), FileFormat.TFEVENT), stats):
        pass
    return stats.values[name]


def diagnose_events(spec: CollectorSpec, root: str, summaries: Sequence[MetricSummary]) -> list[Diagnosis]:
    """Diagnoses for the unavailable metrics of `spec` and for bare names merged across directories."""
    missing = unavailable_names(spec, summaries)
    available = [name for name in spec.metric_names if name not in missing]
    if not missing and not (any("/" not in name for name in available) and _several_directories(root)):
        return []  # nothing to explain, and no bare name can have merged series: no need to read the files
    tags = read_tags(root)
    if tags.files == 0:
        where = f"{root} does not exist" if not os.path.isdir(root) else f"{root} holds no event files"
        return [Diagnosis(name, "nothing_read", f"nothing was read: {where} (file names containing 'tfevents')",
                          "point the collector at the directory the training's SummaryWriter writes to")
                for name in missing]
    out = [_missing(root, tags, name, spec.metric_names) for name in missing]
    out += [d for name in available if (d := _merged(root, tags, name)) is not None]
    return out


def _several_directories(root: str) -> bool:
    from katib_metrics.parsers.tfevent import list_event_files

    return len({relpath.rpartition("/")[0] for relpath, _ in list_event_files(root)}) > 1


def _missing(root: str, tags: EventTags, name: str, requested: Sequence[str]) -> Diagnosis:
    scalars = ", ".join(tags.names()[:10]) or "none"
    if name == ANY_METRIC:
        return Diagnosis(name, "not_scalar", f"{tags.events} events read, none holds a scalar summary",
                         "log metrics as scalars (tf.summary.scalar, SummaryWriter.add_scalar)")
    directory, _, leaf = name.rpartition("/")
    if leaf in tags.scalars:
        dirs = sorted(tags.scalars[leaf])
        shown = ", ".join(f"{d or '.'} ({tags.scalars[leaf][d]} values)" for d in dirs)
        return Diagnosis(name, "tag_elsewhere",
                         f"tag {leaf!r} is under other directories than {directory!r}: {shown}",
                         "request the metric as <directory>/<tag> with the directory the training writes to",
                         _verified(root, [f"{d}/{leaf}" if d else leaf for d in _preferred(dirs)], requested))
    if leaf in tags.non_scalars:
        reldir, why = tags.non_scalars[leaf]
        return Diagnosis(name, "not_scalar",
                         f"tag {leaf!r} (in {reldir or '.'}) holds no scalar ({why}); scalar tags: {scalars}",
                         "log the metric as a scalar (tf.summary.scalar, SummaryWriter.add_scalar)")
    close = [n for n in similar_names(name, [*tags.names(), *tags.scalars]) if n not in requested]
    if close:
        return Diagnosis(name, "similar_names", f"no tag {name!r}, but close tags: {', '.join(map(repr, close))}",
                         "request the metric by the tag the training writes (as <directory>/<tag> to pick one)",
                         _verified(root, close, requested))
    return Diagnosis(name, "not_found", f"no tag {leaf!r} in {tags.files} event file(s); scalar tags: {scalars}",
                     "log the metric under the requested tag, or request one of the tags listed")


def _merged(root: str, tags: EventTags, name: str) -> Diagnosis | None:
    dirs = sorted(tags.scalars.get(name, {}))
    if "/" in name or len(dirs) < 2:
        return None
    shown = ", ".join(f"{d or '.'} ({tags.scalars[name][d]} values)" for d in dirs)
    return Diagnosis(name, "merged_directories",
                     f"{name!r} matched series in {len(dirs)} directories, merged into one: {shown}",
                     "request <directory>/" + name + " to keep one series (e.g. validation only)",
                     _verified(root, [f"{d}/{name}" for d in _preferred(dirs) if d], ()))


def _preferred(dirs: Sequence[str]) -> list[str]:
    """Validation-like directories first: usually the series an objective should follow."""
    def key(d: str) -> tuple[int, str]:
        last = d.rpartition("/")[2].lower()
        return (_PREFERRED_DIRS.index(last) if last in _PREFERRED_DIRS else len(_PREFERRED_DIRS), d)

    return sorted(dirs, key=key)


def _verified(root: str, names: Sequence[str], requested: Sequence[str]) -> Suggestion | None:
    for other in [n for n in names if n not in requested][:5]:
        values = _count(root, other)
        if values:
            return Suggestion("metric", other, values)
    return None
