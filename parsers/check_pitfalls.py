"""Known pitfalls of an Experiment that Katib accepts but that lose metrics or fail trials (pure).

Each is a warning `Finding` with a stable `code`: a metric name no filter's name group can capture
(`name_never_captured`, blocking when it is the objective), a value group that cuts numbers short
(`value_cut_short`), a `;` inside a metricsFormat (`filter_semicolon`), a filter with fewer than two
capture groups (`filter_groups`), a one-string command (`single_string_command`), a primary container
not in the template (`primary_container_missing`), strategies for unknown metrics or with unknown values
(`strategy_unknown_metric`, `strategy_bad_value`), an additional metric whose defaulted strategy looks
like the wrong direction (`strategy_defaulted_direction`), metrics paths the sidecar cannot share
(`metrics_path_outside`, `metrics_volume_hides_files`, `metrics_volume_conflict`), a source ignored for
StdOut (`source_ignored`), and PrometheusMetric without a Katib image (`prometheus_no_katib_image`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

from katib_metrics.parsers.check_rules import Finding
from katib_metrics.parsers.experiment import Collector, Experiment
from katib_metrics.parsers.filters import translate_re2
from katib_metrics.parsers.model import DEFAULT_FILTER
from katib_metrics.parsers.trialtemplate import as_list, find_primary_container

__all__ = ["capture_groups", "pitfalls"]

_STRATEGIES = ("min", "max", "latest")
_LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|rmse|perplexity|latency", re.I)
_HIGHER_IS_BETTER = re.compile(r"acc|auc|f1|precision|recall|map\b|bleu|rouge|reward", re.I)
_TWO_PARENS = re.compile(r".*\(.*\).*\(.*\).*", re.S)  # what Katib's validator accepts as "two groups"
_PATH_FLAG = re.compile(r"(log|metric|event|summar|output|tensorboard|dir|path)", re.I)


def capture_groups(pattern: str) -> list[str]:
    """The source text of each capturing group, in the order of their opening parentheses (as Go numbers them)."""
    found: list[tuple[int, str]] = []
    stack: list[tuple[int, int, bool]] = []  # (paren position, body start, capturing)
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            skip = 2 if pattern[i + 1:i + 2] == "]" else 3 if pattern[i + 1:i + 3] == "^]" else 0
            if skip:
                i += skip
                continue
        elif char == "(":
            named = pattern.startswith(("(?P<", "(?<"), i) and not pattern.startswith(("(?<=", "(?<!"), i)
            body = pattern.find(">", i) + 1 if named else i + 1
            stack.append((i, body, named or not pattern.startswith("(?", i)))
        elif char == ")" and stack:
            at, body, capturing = stack.pop()
            if capturing:
                found.append((at, pattern[body:i]))
        i += 1
    return [text for _, text in sorted(found)]


def _group_matcher(body: str) -> Any:
    try:
        import regex

        return regex.compile(translate_re2(body), regex.ASCII | regex.VERSION0)
    except Exception:  # a group that does not compile alone (rare): no verdict on it
        return None


def _name_findings(exp: Experiment, filters: tuple[str, ...]) -> Iterator[Finding]:
    names = [capture_groups(f)[0] for f in filters if len(capture_groups(f)) >= 2]
    matchers = [m for m in map(_group_matcher, names) if m is not None]
    if not matchers or len(matchers) < len(names):
        return
    for metric in exp.metric_names:
        if not any(m.fullmatch(metric) for m in matchers):
            objective = metric == exp.objective_metric
            shown = ", ".join(f"({n})" for n in dict.fromkeys(names))
            yield Finding("warning", f"{exp.collector.source_field}.filter.metricsFormat",
                          f"the name group {shown} can never capture {metric!r}"
                          + (": the objective would always be unavailable" if objective else ""),
                          "name_never_captured", blocks_objective=objective)


def _value_findings(field: str, pattern: str) -> Iterator[Finding]:
    groups = capture_groups(pattern)
    value = _group_matcher(groups[1]) if len(groups) >= 2 else None
    if value is None or not value.fullmatch("0.5"):
        return
    for sample, what in (("2.5e-05", "no exponent"), ("-0.5", "no sign")):
        if value.fullmatch(sample):
            continue
        head = value.match(sample)
        if head and head.group(0):
            read = f"stops at {head.group(0)} in {sample} ({what}): such values are cut short or not matched at all"
        else:
            read = f"cannot read {sample} ({what})"
        yield Finding("warning", field, f"its value group ({groups[1]}) {read}", "value_cut_short")


def _filter_findings(exp: Experiment) -> Iterator[Finding]:
    collector = exp.collector
    for index, pattern in enumerate(collector.filters):
        field = f"{collector.source_field}.filter.metricsFormat[{index}]"
        if ";" in pattern:
            yield Finding("warning", field, "contains ';': the webhook joins metricsFormat with ';' and the "
                          "sidecar splits -f on ';', so this regex arrives in pieces", "filter_semicolon")
        if len(capture_groups(pattern)) < 2 and _group_matcher(pattern) is not None and _TWO_PARENS.fullmatch(pattern):
            yield Finding("warning", field, f"has {len(capture_groups(pattern))} capture group(s): Katib accepts "
                          "it but collects nothing with it (two are needed: name, then value)", "filter_groups")
        yield from _value_findings(field, pattern)
    if collector.kind in ("StdOut", "File") and collector.file_format != "JSON":
        yield from _name_findings(exp, collector.filters or (DEFAULT_FILTER,))


def _strategy_findings(exp: Experiment) -> Iterator[Finding]:
    explicit = {name for name, _ in exp.explicit_strategies}
    opposite = {"maximize": (_LOWER_IS_BETTER, "max"), "minimize": (_HIGHER_IS_BETTER, "min")}
    hint, given = opposite.get(exp.objective_type, (None, ""))
    for name in exp.additional_metrics:
        if hint is not None and name not in explicit and hint.search(name):
            yield Finding("warning", "spec.objective.metricStrategies", f"{name!r} gets strategy {given} from "
                          f"Katib's defaulter (every metric follows the objective's {exp.objective_type}), which "
                          f"looks like the wrong direction for it: add {{name: {name}, value: ...}}",
                          "strategy_defaulted_direction")
    for index, (name, value) in enumerate(exp.explicit_strategies):
        field = f"spec.objective.metricStrategies[{index}]"
        if name not in exp.metric_names:
            yield Finding("warning", field, f"{name!r} is neither the objective nor an additional metric: the "
                          "strategy is never used", "strategy_unknown_metric")
        if value not in _STRATEGIES:
            yield Finding("warning", field, f"value {value!r} is not min, max or latest", "strategy_bad_value")


def _command_findings(exp: Experiment, container: Mapping[str, Any], where: str) -> Iterator[Finding]:
    command = [str(a) for a in as_list(container.get("command"))]
    args = [str(a) for a in as_list(container.get("args"))]
    shell = len(command) >= 2 and command[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and command[1] == "-c"
    if command and not shell and re.search(r"\s", command[0].strip()):
        yield Finding("warning", f"{where}.command", f"[{command[0]!r}] is one string: the container runs a "
                      f"program literally named {command[0]!r} (only Katib's own rewrap, which joins argv with "
                      f"spaces, hides it); write {command[0].split()!r}", "single_string_command")
    for index, arg in enumerate(args if not shell else []):
        if arg.startswith("-") and re.search(r"\s-", arg):
            yield Finding("warning", f"{where}.args[{index}]", f"{arg!r} is one argument holding several options: "
                          "the program receives it as one string", "single_string_command")


def _mounts(container: Mapping[str, Any]) -> list[str]:
    return [str(m.get("mountPath")) for m in as_list(container.get("volumeMounts")) if isinstance(m, Mapping)]


def _under(path: str, directory: str) -> bool:
    return posixpath.normpath(path).startswith(posixpath.normpath(directory).rstrip("/") + "/")


def _written_paths(container: Mapping[str, Any]) -> list[str]:
    """Absolute paths given to options that name logs, metrics, events or output directories."""
    argv = [str(a) for a in as_list(container.get("command")) + as_list(container.get("args"))]
    found = []
    for index, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-") and _PATH_FLAG.search(flag) and value.startswith("/"):
            found.append(value)
        elif arg.startswith("-") and _PATH_FLAG.search(arg) and index + 1 < len(argv) \
                and argv[index + 1].startswith("/"):
            found.append(argv[index + 1])
    return found


def _path_findings(exp: Experiment, container: Mapping[str, Any], where: str) -> Iterator[Finding]:
    collector: Collector = exp.collector
    path, kind = collector.mount()
    if collector.kind not in ("File", "TensorFlowEvent") or not path.startswith("/"):
        return
    volume = posixpath.dirname(path) if kind == "File" else posixpath.normpath(path)
    field = f"{collector.source_field}.fileSystemPath.path"
    if volume in ("/", ""):
        yield Finding("warning", field, f"{path}: the sidecar's volume would be mounted at /",
                      "metrics_volume_conflict")
        return
    if volume in map(posixpath.normpath, _mounts(container)):
        yield Finding("warning", field, f"the primary container already mounts a volume at {volume}: the webhook "
                      "adds metrics-volume there too and the pod is rejected (duplicate mountPath)",
                      "metrics_volume_conflict")
    argv = [str(a) for a in as_list(container.get("command")) + as_list(container.get("args"))]
    hidden = [a for a in argv if a.startswith("/") and _under(a, volume) and posixpath.normpath(a) != path.rstrip("/")]
    if hidden:
        yield Finding("warning", field, f"the sidecar's empty volume is mounted at {volume}, hiding the image's "
                      f"{hidden[0]}", "metrics_volume_hides_files")
    written = _written_paths(container)
    if written and not any(_under(w, volume) or posixpath.normpath(w) == posixpath.normpath(path) for w in written):
        yield Finding("warning", field, f"the training writes {written[0]}, outside {volume}, the only directory the "
                      f"sidecar shares: it reads {path}", "metrics_path_outside")


def _collector_findings(exp: Experiment) -> Iterator[Finding]:
    collector = exp.collector
    if collector.kind == "StdOut" and (collector.has_file_system_path or collector.http_port):
        yield Finding("warning", collector.source_field, "is ignored for kind StdOut: the sidecar reads the "
                      "training's output from /var/log/katib/metrics.log", "source_ignored")
    if collector.kind == "PrometheusMetric":
        yield Finding("warning", f"{collector.field}.collector.kind", "Katib ships no PrometheusMetric collector: "
                      "katib-config needs a runtime.metricsCollectors entry for it (this project's image works)",
                      "prometheus_no_katib_image")
    for name in exp.metric_names:
        if ";" in name:
            yield Finding("warning", "spec.objective", f"metric name {name!r} contains ';': the webhook joins "
                          "names with ';' for -m, so the sidecar sees two names", "metric_name_semicolon")


def pitfalls(exp: Experiment) -> list[Finding]:
    """Every known pitfall of `exp`, in a stable order."""
    found = [*_collector_findings(exp), *_filter_findings(exp), *_strategy_findings(exp)]
    template = exp.template
    if template is None or template.trial_spec is None or not template.primary_container:
        return found
    primary = find_primary_container(template)
    if primary is None:
        from katib_metrics.parsers.trialtemplate import container_names

        names = ", ".join(container_names(template)) or "none"
        found.append(Finding("warning", "spec.trialTemplate.primaryContainerName" if exp.kind == "Experiment"
                             else "spec.primaryContainerName",
                             f"{template.primary_container!r} is not a container of the template (containers: "
                             f"{names}): the webhook rejects the trial's pods", "primary_container_missing",
                             blocks_objective=True))
        return found
    container, where = primary
    return [*found, *_command_findings(exp, container, where), *_path_findings(exp, container, where)]
