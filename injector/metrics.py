"""The injector's own Prometheus metrics: admissions by outcome and their latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from katib_metrics.injector.admission import OUTCOMES

__all__ = ["InjectorMetrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class InjectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.admissions = Counter("katib_injector_admissions", "Pod admission reviews answered, by outcome.",
                                  ["outcome"], registry=self.registry)
        self.duration = Histogram("katib_injector_admission_duration_seconds",
                                  "Time to answer one admission review.", buckets=_BUCKETS,
                                  registry=self.registry)
        self.cert_reloads = Counter("katib_injector_certificate_reloads",
                                    "Serving certificate (re)loads, by result.", ["result"],
                                    registry=self.registry)
        self.ready = Gauge("katib_injector_ready", "1 when the webhook has a certificate and serves.",
                           registry=self.registry)
        # Children looked up once: `labels()` per admission costs a lock and argument checks.
        self._by_outcome = {outcome: self.admissions.labels(outcome=outcome) for outcome in OUTCOMES}
        for result in ("success", "failure"):
            self.cert_reloads.labels(result=result)

    def observe(self, outcome: str, seconds: float) -> None:
        counter = self._by_outcome.get(outcome)
        (counter if counter is not None else self.admissions.labels(outcome=outcome)).inc()
        self.duration.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
