"""Katib's sidecar flags, parsed as Go's `flag` package and the tfevent collector's argparse read them.

The sidecar must accept exactly what Katib's webhook passes to its own images (reference §2.1, §3.1):
single-letter-ish Go flags (`-t`, `-s-db`, `-stop-rule`, ...) in the forms `-x v`, `-x=v`, `--x v` and
`--x=v`, Go durations (`1s`, `500ms`) or plain seconds (the tfevent collector's integers), and the
tfevent collector's long names (`--trial_name`, ...). Our own options are long names only. Parsing is
pure: argv in, `SidecarFlags` out, `UsageError` naming the flag on anything wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from katib_metrics.parsers.durations import parse_duration as go_duration

__all__ = [
    "FLAGS",
    "Flag",
    "SidecarFlags",
    "UsageError",
    "go_parse_bool",
    "parse_duration",
    "parse_sidecar_flags",
    "usage",
]


class UsageError(ValueError):
    """A bad command line: the message names the flag and the fix (exit 2, like Go's flag package)."""


class Kind(enum.Enum):
    STRING = "string"
    DURATION = "duration"
    INT = "int"
    BOOL = "bool"  # Go bool flag: `-x`, `-x=true`; never `-x true`
    REPEAT = "value (repeatable)"


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    names: tuple[str, ...]
    kind: Kind
    help: str
    ours: bool = False  # our extensions: long options only, not in Katib's images

    def spellings(self) -> str:
        return ", ".join(("--" if self.ours or "_" in name else "-") + name for name in self.names)


def _ours(key: str, name: str, kind: Kind, text: str) -> Flag:
    return Flag(key, (name,), kind, text, ours=True)


FLAGS: tuple[Flag, ...] = (
    Flag("trial", ("t", "trial_name"), Kind.STRING, "trial name, sent as trial_name (env KATIB_TRIAL_NAME)"),
    Flag("metrics", ("m", "metric_names"), Kind.STRING, "metric names joined by ';', objective first"),
    Flag("objective_type", ("o-type", "objective_type"), Kind.STRING, "minimize or maximize"),
    Flag("db_manager", ("s-db", "db_manager_server_addr"), Kind.STRING, "db-manager address HOST:PORT"),
    Flag("earlystop", ("s-earlystop",), Kind.STRING, "early-stopping service address HOST:PORT"),
    Flag("path", ("path",), Kind.STRING, "metrics file, or a directory of TensorFlow event files"),
    Flag("tfevent_dir", ("metrics_file_dir",), Kind.STRING, "directory of TensorFlow event files"),
    Flag("format", ("format",), Kind.STRING, "TEXT (default: Katib's name=value lines) or JSON (JSON lines); "
         "a directory -path is always TensorFlow events"),
    Flag("filters", ("f", "metric_filters"), Kind.STRING, "metricsFormat regexes joined by ';'"),
    Flag("poll_interval", ("p", "poll_interval"), Kind.DURATION, "process poll interval (default 1s)"),
    Flag("timeout", ("timeout",), Kind.DURATION, "give up waiting for the training after this (0 = never)"),
    Flag("wait_all", ("w", "wait_all_processes"), Kind.STRING,
         "true (default): wait until every process of the other containers ended; false: only the main one"),
    Flag("stop_rules", ("stop-rule",), Kind.REPEAT, "early-stopping rule name;value;comparison;startStep"),
    _ours("metrics_port", "metrics-port", Kind.INT, "serve our own /metrics on this port (0 = off)"),
    _ours("metrics_address", "metrics-address", Kind.STRING, "address for --metrics-port (all interfaces)"),
    _ours("report_timeout", "report-timeout", Kind.DURATION, "retry reporting for at most this (300s)"),
    _ours("regex_timeout", "regex-timeout", Kind.DURATION, "time bound of one line's regex match (1s)"),
    _ours("grace_period", "grace-period", Kind.DURATION, "time for the final report after SIGTERM (20s)"),
    _ours("stop_grace", "stop-grace", Kind.DURATION, "early stopping: SIGKILL what outlives SIGTERM so long (10s)"),
    _ours("echo", "echo", Kind.BOOL, "also print every line read to our log (Katib always does)"),
    _ours("mesh_proxies", "mesh-proxies", Kind.STRING,
          "executables never waited for, comma-separated (pilot-agent,envoy,linkerd2-proxy)"),
    _ours("prometheus_url", "prometheus-url", Kind.STRING, "scrape this URL instead of reading files"),
    _ours("spill_dir", "spill-dir", Kind.STRING, "directory for rows beyond the 10,000 "
          "kept in memory until reported (default: the metrics file's directory)"),
)

_BY_NAME: dict[str, Flag] = {name: flag for flag in FLAGS for name in flag.names}


@dataclass(frozen=True, slots=True)
class SidecarFlags:
    """What the command line said, typed; `given` holds the keys that were set explicitly."""

    values: dict[str, object] = field(default_factory=dict)
    given: frozenset[str] = frozenset()

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def text(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        return value if isinstance(value, str) else default

    def number(self, key: str, default: float) -> float:
        value = self.values.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def repeated(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, ())
        return tuple(value) if isinstance(value, list | tuple) else ()

    def flag(self, key: str) -> bool:
        return self.values.get(key) is True


class HelpRequested(Exception):
    """`-h`/`--help` was given (Go prints usage and exits 0)."""


def parse_duration(text: str, flag: str = "duration") -> float:
    """Seconds from Go's `time.ParseDuration` syntax (`1m30s`, `500ms`) or plain seconds (`1`, `2.5`)."""
    try:
        return go_duration(text)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for flag -{flag}: not a duration "
                         "(use Go syntax like 1s, 500ms, 2m30s, or plain seconds)") from None


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def go_parse_bool(text: str) -> bool | None:
    """Go's `strconv.ParseBool`: the twelve spellings it knows, else None."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _convert(flag: Flag, name: str, raw: str) -> object:
    if flag.kind is Kind.DURATION:
        return parse_duration(raw, name)
    if flag.kind is Kind.INT:
        try:
            return int(raw, 10)
        except ValueError:
            raise UsageError(f"invalid value {raw!r} for flag --{name}: not an integer") from None
    if flag.kind is Kind.BOOL:
        parsed = go_parse_bool(raw)
        if parsed is None:
            raise UsageError(f"invalid boolean value {raw!r} for flag --{name}: use true or false")
        return parsed
    return raw


def _split(arg: str) -> tuple[str, str | None]:
    body = arg[2:] if arg.startswith("--") else arg[1:]
    name, eq, value = body.partition("=")
    return name, (value if eq else None)


def parse_sidecar_flags(argv: Sequence[str]) -> SidecarFlags:
    """Parse argv like Go's flag package; raises UsageError, or HelpRequested for -h/--help."""
    values: dict[str, object] = {}
    given: set[str] = set()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if i < len(args):
                raise UsageError(f"unexpected argument {args[i]!r}: the sidecar takes flags only")
            break
        if not arg.startswith("-") or arg == "-" or arg.startswith("---"):
            raise UsageError(f"unexpected argument {arg!r}: the sidecar takes flags only (-name value)")
        name, value = _split(arg)
        if name in ("h", "help"):
            raise HelpRequested
        flag = _BY_NAME.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")  # the caller points to --help
        if value is None:
            if flag.kind is Kind.BOOL:
                value = "true"
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise UsageError(f"flag needs an argument: -{name}")
        converted = _convert(flag, name, value)
        if flag.kind is Kind.REPEAT:
            previous = values.setdefault(flag.key, [])
            assert isinstance(previous, list)
            previous.append(converted)
        else:
            values[flag.key] = converted
        given.add(flag.key)
    return SidecarFlags(values, frozenset(given))


def usage(prog: str, describe: Callable[[Flag], str] | None = None) -> str:
    """The `--help` text: every flag with its spellings."""
    lines = [
        f"usage: {prog} -t TRIAL -m METRICS -s-db HOST:PORT -path PATH [flags]",
        "",
        "The metrics-collector sidecar: accepts the flags Katib's webhook gives its file and tfevent",
        "collector images, waits for the training, and reports its metrics to the db-manager.",
        "Flags take `-name value`, `-name=value` or `--name=value`. Durations: 1s, 500ms, 2m or seconds.",
        "",
        "flags:",
    ]
    for flag in FLAGS:
        kind = "" if flag.kind is Kind.BOOL else f" {flag.kind.value}"
        lines.append(f"  {flag.spellings()}{kind}")
        lines.append(f"        {describe(flag) if describe else flag.help}")
    return "\n".join(lines)
