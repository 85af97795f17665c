"""The end of a one-shot parse or a run: input warnings and diagnoses, as text lines or JSON (pure).

Shared by `parse`, `run` and the sidecar's exit log so all three say the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from katib_metrics.parsers.diagnosis import Diagnosis, diagnose, format_diagnosis
from katib_metrics.parsers.input_checks import input_warnings, missing_path_warning
from katib_metrics.parsers.model import CollectorSpec, MetricSummary

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Warnings about the input as a whole, then one diagnosis per unavailable metric."""

    warnings: tuple[str, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        """Human lines, without a program prefix: `warning: …`, then `diagnosis: …` and its fix."""
        out = [f"warning: {warning}" for warning in self.warnings]
        for diagnosis in self.diagnoses:
            first, *rest = format_diagnosis(diagnosis)
            out += [f"diagnosis: {first}", *rest]
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [diagnosis.to_dict() for diagnosis in self.diagnoses]


def explain(
    spec: CollectorSpec,
    path: str,
    summaries: Sequence[MetricSummary],
    *,
    head: bytes | None = None,
    regex_timeout: float = 1.0,
) -> Explanation:
    """Warnings (only when nothing was found at all) and diagnoses for what `summaries` lack.

    `head` replaces the file's content for inputs that cannot be read again (standard input, a
    command's output): a bounded buffer kept while reading.
    """
    if not path and head is None:
        return Explanation()  # nothing to look at again (a scrape)
    found_any = any(s.count for s in summaries)
    warnings = input_warnings(path, spec.format, found_any=found_any, head=head) if path else []
    if path and path != "-" and (gone := missing_path_warning(path, spec.format)) is not None:
        warnings.insert(0, gone)
    diagnoses = diagnose(spec, spec.format, path, summaries, data=head, regex_timeout=regex_timeout)
    return Explanation(tuple(warnings), tuple(diagnoses))
