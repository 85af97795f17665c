"""The exception tree of the reporting client: what failed, where, with which gRPC code, and what to check.

    ServiceError            an RPC to a Katib service (db-manager or early stopping) failed for good
    ├── ReportError         ReportObservationLog: some rows may not have been stored
    ├── TrialStatusError    EarlyStopping.SetTrialStatus
    └── QueryError          GetObservationLog / DeleteObservationLog

Every error carries `address`, `code` (the gRPC status code name, e.g. "UNAVAILABLE") and `gave_up`:
True when the code was retryable and the retry budget ran out, False when the server refused at once.
Programming errors (an empty trial name, a bad address) are plain `ValueError`s raised before any call.
"""

from __future__ import annotations

# What to check, per gRPC code; the fallback covers the rest.
_HINTS: dict[str, str] = {
    "UNAVAILABLE": "check that the service runs and is reachable at that address (DNS, port, network policy)",
    "DEADLINE_EXCEEDED": "the service is too slow or overloaded; check its logs and its database",
    "RESOURCE_EXHAUSTED": "the service is overloaded or the message is too large; check its logs and limits",
    "INVALID_ARGUMENT": "the service rejected the data; check the time stamps and names in the request",
    "UNIMPLEMENTED": "the address answers gRPC but is not the right Katib service; check the address",
    "CANCELLED": "the service kept stopping while answering (restarts or a rolling update); check its pods",
}
_DEFAULT_HINT = "check the service's logs"


def hint_for(code: str) -> str:
    """What a user should check after a failure with this gRPC code."""
    return _HINTS.get(code, _DEFAULT_HINT)


class ServiceError(RuntimeError):
    """An RPC failed for good; the message names the service, the address, the code and what to check."""

    def __init__(
        self, what: str, address: str, code: str, details: str, *, gave_up: bool, attempts: int
    ) -> None:
        self.what = what
        self.address = address
        self.code = code
        self.details = details
        self.gave_up = gave_up
        self.attempts = attempts
        super().__init__(self._message())

    def _message(self) -> str:
        tries = f" after {self.attempts} attempts (retry budget exhausted)" if self.gave_up else ""
        details = f": {self.details}" if self.details else ""
        return f"{self.what} at {self.address} failed with {self.code}{details}{tries}; {hint_for(self.code)}"


class ReportError(ServiceError):
    """ReportObservationLog failed; `rows_acknowledged` of `rows_total` rows were stored before it did."""

    def __init__(
        self,
        address: str,
        code: str,
        details: str,
        *,
        trial: str,
        gave_up: bool,
        attempts: int,
        rows_acknowledged: int,
        rows_total: int,
    ) -> None:
        self.trial = trial
        self.rows_acknowledged = rows_acknowledged
        self.rows_total = rows_total
        super().__init__(
            f"reporting the observation log of trial {trial!r} to the db-manager",
            address,
            code,
            details,
            gave_up=gave_up,
            attempts=attempts,
        )

    def _message(self) -> str:
        stored = f" ({self.rows_acknowledged} of {self.rows_total} rows were stored before the failure)"
        return super()._message() + stored


class TrialStatusError(ServiceError):
    """SetTrialStatus failed: the trial was stopped but Katib was not told."""


class QueryError(ServiceError):
    """GetObservationLog or DeleteObservationLog failed."""
