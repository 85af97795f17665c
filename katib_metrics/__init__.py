"""The `katib-metrics` application shell: one console script over parsers, collector and injector."""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "version"]


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
    raise AttributeError(f"module 'katib_metrics' has no attribute {name!r}")
