"""The collector runtime: sidecar (`collect`), local db-manager and `run`. Imports `parsers`, never `injector`."""

__all__: list[str] = []
