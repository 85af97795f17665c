"""Random and malformed AdmissionReviews: every one gets a well-formed AdmissionReview answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.admission import AdmissionHandler
from injector.config import KatibConfig
from injector.mutate import ImageConfig
from injector.sidecar import SidecarOptions
from injector.trial import Algorithm, Trial
from tests.injector import factories as f


class StaticResolver:
    """Every pod with an ownerReference belongs to the same trial (the fuzz targets decoding, not lookups)."""

    def find_trial(self, pod: Mapping[str, Any], namespace: str) -> Trial | None:
        owners = (pod.get("metadata") or {}).get("ownerReferences")
        return Trial.from_object(f.trial()) if owners else None

    def algorithm(self, trial: Trial, namespace: str) -> Algorithm | None:
        return Algorithm("exp", "random")

    def katib_config(self) -> KatibConfig:
        return f.katib_config()

    def image_config(self, container: Mapping[str, Any], pod: Mapping[str, Any],
                     namespace: str) -> ImageConfig | None:
        return None


HANDLER = AdmissionHandler(StaticResolver(), SidecarOptions())
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3), max_leaves=12)
POD_KEYS = st.sampled_from(["metadata", "spec", "containers", "name", "command", "args", "labels", "env",
                            "ownerReferences", "training-container", "kind", "volumes"])
POD_LIKE = st.recursive(JSON, lambda inner: st.dictionaries(POD_KEYS, inner, max_size=4), max_leaves=20)


def check(body: bytes) -> None:
    answer = HANDLER.handle(body)
    assert answer.outcome in ("mutated", "unchanged", "denied", "invalid")
    review = json.loads(json.dumps(answer.review))
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    response = review["response"]
    assert isinstance(response["uid"], str) and isinstance(response["allowed"], bool)
    if response["allowed"] and "patch" in response:
        assert isinstance(json.loads(base64.b64decode(response["patch"])), list)
    if not response["allowed"]:
        assert response["status"]["message"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bodies(body: bytes) -> None:
    check(body)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(POD_LIKE, st.booleans())
def test_pod_shaped_garbage(pod: Any, owned: bool) -> None:
    if owned and isinstance(pod, dict):
        meta = pod.setdefault("metadata", {})
        if isinstance(meta, dict):
            meta["ownerReferences"] = [{"kind": "Job", "name": "x"}]
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "namespace": "team-a", "object": pod}}
    check(json.dumps(body).encode())


def test_valid_review_is_mutated() -> None:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "namespace": "team-a", "object": f.pod()}}
    assert HANDLER.handle(json.dumps(body).encode()).outcome == "mutated"
