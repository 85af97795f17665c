"""The sidecar's one settings object: flags, then environment, then defaults, resolved and validated once.

Everything that can be wrong with a command line is found here, before any waiting starts, and raised
as `UsageError` with the flag named (DESIGN difference 6: a bad regex is a usage error, not a crash
mid-run). `cli.py` is the only caller that passes the real argv and environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from katib_metrics.collector.earlystop import DEFAULT_STOP_GRACE, StopRule, parse_stop_rules
from katib_metrics.collector.flags import SidecarFlags, UsageError, go_parse_bool
from katib_metrics.parsers.errors import FilterError, SpecError
from katib_metrics.parsers.filters import compile_filters, split_katib_filters
from katib_metrics.parsers.model import CollectorSpec, FileFormat, ObjectiveType

__all__ = ["DEFAULT_MESH_PROXIES", "Settings", "StopRule", "resolve_settings"]

DEFAULT_MESH_PROXIES = ("pilot-agent", "envoy", "linkerd2-proxy")
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_REPORT_TIMEOUT = 300.0
DEFAULT_REGEX_TIMEOUT = 1.0
DEFAULT_GRACE_PERIOD = 20.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one sidecar process needs to know, typed and checked."""

    trial_name: str
    spec: CollectorSpec
    db_manager: str
    path: Path | None = None
    marker_dir: Path | None = None
    prometheus_url: str | None = None
    earlystop: str = ""
    stop_rules: tuple[StopRule, ...] = ()
    poll_interval: float = DEFAULT_POLL_INTERVAL
    timeout: float = 0.0
    wait_all: bool = True
    metrics_port: int = 0
    metrics_address: str = ""
    report_timeout: float = DEFAULT_REPORT_TIMEOUT
    regex_timeout: float = DEFAULT_REGEX_TIMEOUT
    grace_period: float = DEFAULT_GRACE_PERIOD
    stop_grace: float = DEFAULT_STOP_GRACE
    echo: bool = False
    mesh_proxies: tuple[str, ...] = DEFAULT_MESH_PROXIES
    spill_dir: Path | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def kind(self) -> FileFormat:
        return self.spec.format


def split_names(text: str) -> tuple[str, ...]:
    """Katib's `-m a;b;c`, without empty names or repeats (order kept: the first is the objective)."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(";") if part.strip()))


def check_address(address: str, flag: str) -> str:
    """A gRPC target `HOST:PORT` (IPv6 as `[::1]:6789`); names the flag when it is not one."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and ":" in host
    bad_host = not host or (not bracketed and any(c in host for c in ":[]/ "))
    if not sep or bad_host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid address {address!r} for {flag}: want HOST:PORT, "
                         "e.g. katib-db-manager.kubeflow:6789")
    return address


def _infer_kind(flags: SidecarFlags, fmt: str) -> tuple[FileFormat, Path | None]:
    """Katib's rule: a directory is TensorFlow events, `-format JSON` is JSON lines, else text."""
    if flags.text("prometheus_url"):
        given = flags.text("path")
        return FileFormat.PROMETHEUS, Path(given) if given else None
    if flags.text("tfevent_dir"):
        return FileFormat.TFEVENT, Path(flags.text("tfevent_dir"))
    raw = flags.text("path")
    if not raw:
        raise UsageError("-path is required: the metrics file (kinds StdOut/File) or event directory "
                         "(TensorFlowEvent), e.g. -path /var/log/katib/metrics.log")
    path = Path(raw)
    if raw.endswith("/") or path.is_dir():
        return FileFormat.TFEVENT, path
    if fmt.upper() == "JSON":
        return FileFormat.JSON, path
    if fmt and fmt.upper() != "TEXT":
        raise UsageError(f"invalid -format {fmt!r}: format must be set TEXT or JSON")
    return FileFormat.TEXT, path


def _filters(flags: SidecarFlags) -> tuple[str, ...]:
    filters = split_katib_filters(flags.text("filters"))
    try:
        compile_filters(filters)
    except FilterError as err:
        raise UsageError(f"-f: {err}") from None
    return filters


def _wait_all(flags: SidecarFlags, warnings: list[str]) -> bool:
    raw = flags.text("wait_all", "true")
    parsed = go_parse_bool(raw)
    if parsed is None:
        # Katib's Go collector silently takes a bad value as false; we say so.
        warnings.append(f"-w {raw!r} is not a boolean (true/false); not waiting for other containers")
        return False
    return parsed


def _positive(value: float, flag: str, *, allow_zero: bool) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{flag} must be {'zero or ' if allow_zero else ''}positive, got {value:g}s")
    return value


def _port(flags: SidecarFlags) -> int:
    port = int(flags.number("metrics_port", 0))
    if not 0 <= port < 65536:
        raise UsageError(f"--metrics-port {port} is not a port number (0 = off)")
    return port


def _spec(flags: SidecarFlags, kind: FileFormat) -> CollectorSpec:
    names = split_names(flags.text("metrics"))
    if not names:
        raise UsageError("-m is required: the metric names joined by ';', the objective first")
    return CollectorSpec(
        metric_names=names,
        filters=_filters(flags) if kind in (FileFormat.TEXT, FileFormat.JSON) else (),
        format=kind,
        objective_type=ObjectiveType.parse(flags.text("objective_type")),
    )


def _prometheus_url(flags: SidecarFlags, spec: CollectorSpec) -> str | None:
    """The scrape URL and the `-m` selectors checked before anything starts (a bad one is a usage error)."""
    url = flags.text("prometheus_url")
    if not url:
        return None
    # Imported here: only the PrometheusMetric kind needs the exposition parser and urllib.
    from katib_metrics.collector.sources.prometheus import check_url
    from katib_metrics.parsers.prometheus import compile_selectors

    try:
        compile_selectors(spec.metric_names)
        return check_url(url)
    except SpecError as err:
        flag = "-m" if "selector" in str(err) else "--prometheus-url"
        raise UsageError(f"{flag}: {err}") from None


def _marker_dir(kind: FileFormat, path: Path | None) -> Path | None:
    if path is None:
        return None
    return path if kind is FileFormat.TFEVENT else path.parent


def resolve_settings(flags: SidecarFlags, env: Mapping[str, str] | None = None) -> Settings:
    """Turn parsed flags (and `KATIB_TRIAL_NAME` from the environment) into checked settings."""
    environ = os.environ if env is None else env
    warnings: list[str] = []
    trial = flags.text("trial") or environ.get("KATIB_TRIAL_NAME", "")
    if not trial:
        raise UsageError("-t is required: the trial name (or set KATIB_TRIAL_NAME)")
    db_manager = flags.text("db_manager")
    if not db_manager:
        raise UsageError("-s-db is required: the db-manager address, e.g. katib-db-manager.kubeflow:6789")
    kind, path = _infer_kind(flags, flags.text("format"))
    marker_dir = _marker_dir(kind, path)
    earlystop = flags.text("earlystop")
    proxies = tuple(p.strip() for p in flags.text("mesh_proxies", ",".join(DEFAULT_MESH_PROXIES)).split(","))
    spill = flags.text("spill_dir")
    spec = _spec(flags, kind)
    return Settings(
        trial_name=trial,
        spec=spec,
        db_manager=check_address(db_manager, "-s-db"),
        path=path,
        marker_dir=marker_dir,
        prometheus_url=_prometheus_url(flags, spec),
        earlystop=check_address(earlystop, "-s-earlystop") if earlystop else "",
        stop_rules=parse_stop_rules(flags.repeated("stop_rules")),
        poll_interval=_positive(flags.number("poll_interval", DEFAULT_POLL_INTERVAL), "-p", allow_zero=False),
        timeout=_positive(flags.number("timeout", 0.0), "-timeout", allow_zero=True),
        wait_all=_wait_all(flags, warnings),
        metrics_port=_port(flags),
        metrics_address=flags.text("metrics_address"),
        report_timeout=_positive(flags.number("report_timeout", DEFAULT_REPORT_TIMEOUT), "--report-timeout",
                                 allow_zero=False),
        regex_timeout=_positive(flags.number("regex_timeout", DEFAULT_REGEX_TIMEOUT), "--regex-timeout",
                                allow_zero=False),
        grace_period=_positive(flags.number("grace_period", DEFAULT_GRACE_PERIOD), "--grace-period",
                               allow_zero=False),
        stop_grace=_positive(flags.number("stop_grace", DEFAULT_STOP_GRACE), "--stop-grace", allow_zero=True),
        echo=flags.flag("echo"),
        mesh_proxies=tuple(p for p in proxies if p),
        spill_dir=Path(spill) if spill else marker_dir,
        warnings=tuple(warnings),
    )
