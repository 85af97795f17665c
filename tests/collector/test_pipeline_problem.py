"""Collection that stops early names the reason and the metrics it may have cut short (never an empty reason)."""

from __future__ import annotations

from katib_metrics.collector.pipeline import Pipeline
from katib_metrics.collector.store import MetricStore
from katib_metrics.parsers.model import CollectorSpec, MetricLog


class Exhausted:
    def read(self) -> list[MetricLog]:
        raise MemoryError

    def flush(self) -> list[MetricLog]:
        return []

    def wait(self, timeout: float) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


def test_an_exception_without_a_message_is_named_with_the_metrics_at_risk() -> None:
    store = MetricStore(CollectorSpec(metric_names=("val_loss", "train_loss")))
    pipeline = Pipeline(Exhausted(), store).start()
    assert pipeline.stop(timeout=30)
    assert pipeline.problem == ("collection stopped early (MemoryError); reporting what was collected, "
                                "which may be incomplete for: val_loss, train_loss")
    store.close()
