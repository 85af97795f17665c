"""The mutating admission webhook that attaches collector sidecars. Imports `parsers`, never `collector`."""

__all__: list[str] = []
