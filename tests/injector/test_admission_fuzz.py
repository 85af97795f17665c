"""10,000 random and malformed AdmissionReviews through the real handler: each gets a well-formed answer.

The bodies come from `tests.injector.fuzz` (arbitrary bytes and JSON, deep nesting, malformed reviews, pod-shaped
garbage, valid trial pods with fields replaced or removed, odd encodings). Hypothesis draws them in batches of
20, mostly as byte genomes, which costs far less per body than one example each, so all 10,000 stay in the
default run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings

from katib_metrics.injector.admission import AdmissionHandler
from katib_metrics.injector.config import KatibConfig
from katib_metrics.injector.mutate import ImageConfig
from katib_metrics.injector.sidecar import SidecarOptions
from katib_metrics.injector.trial import Algorithm, Trial
from tests.injector import factories as f
from tests.injector.fuzz import batches, check_answer

BODY_COUNT = 10_000
BATCH = 20


class StaticResolver:
    """Every pod with an ownerReference belongs to the same trial (the fuzz targets decoding, not lookups)."""

    def __init__(self) -> None:
        self.trial = Trial.from_object(f.trial(rules=[{"name": "accuracy", "value": "0.5", "comparison": "less"}]))
        self.config = f.katib_config()

    def find_trial(self, pod: Mapping[str, Any], namespace: str) -> Trial | None:
        owners = (pod.get("metadata") or {}).get("ownerReferences")
        return self.trial if owners else None

    def algorithm(self, trial: Trial, namespace: str) -> Algorithm | None:
        return Algorithm("exp", "medianstop")

    def katib_config(self) -> KatibConfig:
        return self.config

    def image_config(self, container: Mapping[str, Any], pod: Mapping[str, Any],
                     namespace: str) -> ImageConfig | None:
        return ImageConfig(entrypoint=("python",), cmd=("train.py",))


HANDLER = AdmissionHandler(StaticResolver(), SidecarOptions())


def test_ten_thousand_random_and_malformed_reviews_each_get_a_well_formed_answer() -> None:
    outcomes: dict[str, int] = {}

    @settings(max_examples=BODY_COUNT // BATCH, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batches(BATCH))
    def run(bodies: list[bytes]) -> None:
        for body in bodies:
            answer = HANDLER.handle(body)  # no exception, whatever the body
            check_answer(body, json.loads(json.dumps(answer.review)), answer.outcome)
            outcomes[answer.outcome] = outcomes.get(answer.outcome, 0) + 1

    run()
    assert sum(outcomes.values()) >= BODY_COUNT
    assert all(outcomes.get(outcome) for outcome in ("mutated", "unchanged", "invalid")), outcomes


def test_valid_review_is_mutated() -> None:
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u", "namespace": "team-a", "object": f.pod()}}).encode()
    answer = HANDLER.handle(body)
    assert answer.outcome == "mutated"
    check_answer(body, answer.review, answer.outcome)
