"""The `katib-metrics` application shell (one console script over parsers, collector and injector), and push mode.

`from katib_metrics import report_metrics` is a drop-in for `kubeflow.katib.report_metrics`; `MetricsReporter`
is its non-blocking form for training loops. Both are imported on first use, so importing this package
costs nothing, and push mode needs only `grpcio` and `protobuf` (`pip install 'katib-metrics-collector[push]'`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from katib_metrics.collector.push import report_metrics
    from katib_metrics.collector.push_reporter import MetricsReporter

__all__ = ["MetricsReporter", "__version__", "report_metrics", "version"]

_LAZY = {
    "report_metrics": "katib_metrics.collector.push",
    "MetricsReporter": "katib_metrics.collector.push_reporter",
}


def version() -> str:
    """The installed distribution's version (read on demand: importlib.metadata costs ~60 ms at start-up)."""
    from importlib import metadata

    try:
        return metadata.version("katib-metrics-collector")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return version()
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] not in ("grpc", "google"):
                raise
            from katib_metrics.parsers.install import install_command

            raise ModuleNotFoundError(f"katib_metrics.{name} needs grpcio and protobuf ({err.name} is missing): "
                                      f"{install_command('push')}", name=err.name) from err
        value = getattr(module, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'katib_metrics' has no attribute {name!r}")
