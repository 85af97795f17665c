"""Hypothesis strategies for admission bodies (random, malformed, pod-shaped) and the check of each answer.

`BODIES` draws each body from composed strategies: arbitrary bytes and JSON, deeply nested JSON, AdmissionReviews
with random or malformed fields, pod-shaped garbage, and a valid trial pod with one field replaced or removed
(which reaches the mutation and the JSON patch). They cost 1.5 to 3.5 ms each to draw, so `batches` mixes one of
them with bodies decoded from drawn bytes (`tests.injector.genome`, 0.1 ms each). `check_answer` is what "a
well-formed response" means.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
from hypothesis import strategies as st

from tests.injector.genome import API_VERSION, POD_PATHS, SAMPLE_POD, decode_body

OUTCOMES = ("mutated", "unchanged", "denied", "invalid")
_DELETE = object()

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
POD_KEYS = st.sampled_from(["metadata", "spec", "containers", "initContainers", "name", "command", "args",
                            "labels", "env", "ownerReferences", "training-container", "kind", "volumes",
                            "volumeMounts", "securityContext", "image", "apiVersion", "controller"])
POD_LIKE = st.recursive(SCALARS, lambda inner: st.dictionaries(POD_KEYS, inner, max_size=4)
                        | st.lists(inner, max_size=2), max_leaves=10)

CONTAINER_SKELETON = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["training-container", "helper"]) | SCALARS,
    "image": st.just("python:3.11") | SCALARS,
    "command": st.lists(st.text(max_size=6), max_size=3) | JSON,
    "args": st.lists(st.text(max_size=6), max_size=3) | JSON,
    "env": JSON, "volumeMounts": JSON, "securityContext": JSON,
})
POD_SKELETON = st.fixed_dictionaries({}, optional={
    "kind": st.just("Pod") | SCALARS,
    "metadata": st.fixed_dictionaries({}, optional={
        "namespace": st.just("team-a") | SCALARS, "labels": JSON, "annotations": JSON, "name": SCALARS,
        "ownerReferences": st.lists(st.fixed_dictionaries({}, optional={
            "kind": st.just("Job") | SCALARS, "name": SCALARS, "apiVersion": st.just("batch/v1") | SCALARS,
            "controller": SCALARS}) | JSON, max_size=2) | JSON,
    }) | JSON,
    "spec": st.fixed_dictionaries({}, optional={
        "containers": st.lists(CONTAINER_SKELETON | JSON, max_size=2) | JSON,
        "initContainers": JSON, "volumes": JSON, "securityContext": JSON, "shareProcessNamespace": SCALARS,
    }) | JSON,
})


def _corrupt(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    pod: dict[str, Any] = json.loads(SAMPLE_POD)
    parent: Any = pod
    for key in path[:-1]:
        parent = parent[key]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return pod


CORRUPTED_POD = st.builds(_corrupt, st.sampled_from(POD_PATHS), st.just(_DELETE) | JSON)
TEXT_OR_JSON = st.text(max_size=12) | JSON


def _review(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


REQUESTS = st.fixed_dictionaries({}, optional={
    "uid": st.uuids().map(str) | TEXT_OR_JSON,
    "namespace": st.just("team-a") | TEXT_OR_JSON,
    "operation": st.sampled_from(["CREATE", "UPDATE"]) | TEXT_OR_JSON,
    "object": CORRUPTED_POD | POD_SKELETON | POD_LIKE | JSON,
}) | JSON
REVIEWS = st.fixed_dictionaries({}, optional={
    "apiVersion": st.sampled_from([API_VERSION, "admission.k8s.io/v1beta1", ""]) | JSON,
    "kind": st.sampled_from(["AdmissionReview", "Pod"]) | JSON,
    "request": REQUESTS,
}).map(_review)
VALID_REVIEWS = st.fixed_dictionaries({
    "apiVersion": st.just(API_VERSION), "kind": st.just("AdmissionReview"),
    "request": st.fixed_dictionaries({"uid": st.uuids().map(str),
                                      "object": CORRUPTED_POD | POD_SKELETON | POD_LIKE},
                                     optional={"namespace": st.just("team-a") | TEXT_OR_JSON}),
}).map(_review)


def _nested(depth: int, dicts: bool) -> bytes:
    """JSON nested `depth` deep: shallow ones reach the mutation, deep ones the decoder's recursion limit."""
    return b'{"a":' * depth + b"0" + b"}" * depth if dicts else b"[" * depth + b"]" * depth


def _deep_pod_review(path: tuple[Any, ...], depth: int, dicts: bool) -> bytes:
    """A review whose pod holds deeply nested JSON at `path` (built as text: json.dumps would refuse it)."""
    marker = "\x00deep"
    body = _review({"apiVersion": API_VERSION, "kind": "AdmissionReview",
                    "request": {"uid": "deep", "namespace": "team-a", "object": _corrupt(path, marker)}})
    return body.replace(json.dumps(marker).encode(), _nested(depth, dicts))


NESTED = st.builds(_nested, st.integers(1, 3000), st.booleans())
DEEP_POD_REVIEWS = st.builds(_deep_pod_review, st.sampled_from(POD_PATHS), st.integers(1, 3000), st.booleans())
BODIES = (st.binary(max_size=48) | JSON.map(lambda v: json.dumps(v).encode()) | NESTED | DEEP_POD_REVIEWS
          | REVIEWS | VALID_REVIEWS | VALID_REVIEWS)


def batches(size: int) -> st.SearchStrategy[list[bytes]]:
    """`size` bodies: one from `BODIES`, the others decoded from drawn genomes."""
    genomes = st.lists(st.binary(max_size=48).map(decode_body), min_size=size - 1, max_size=size - 1)
    return st.tuples(BODIES, genomes).map(lambda drawn: [drawn[0], *drawn[1]])


def expected_uid(body: bytes) -> str:
    """The uid the answer must carry: the request's when it is a non-empty string, else empty."""
    try:
        review = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    request = review.get("request") if isinstance(review, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) else ""


def _submitted_pod(body: bytes) -> Any:
    return json.loads(body)["request"]["object"]


def check_answer(body: bytes, answer: dict[str, Any], outcome: str | None = None) -> None:
    """A well-formed AdmissionReview v1 answer to `body`: its uid, an `allowed` boolean, a patch that applies."""
    assert outcome is None or outcome in OUTCOMES
    assert set(answer) == {"apiVersion", "kind", "response"}
    assert answer["apiVersion"] == API_VERSION and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == expected_uid(body)
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert set(response) == {"uid", "allowed", "status"}
        status = response["status"]
        assert isinstance(status["code"], int) and status["status"] == "Failure"
        assert isinstance(status["message"], str) and status["message"]
        assert outcome in (None, "denied", "invalid")
    elif "patch" in response:
        assert response["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(response["patch"], validate=True))
        assert isinstance(patch, list) and patch
        mutated = jsonpatch.apply_patch(_submitted_pod(body), patch, in_place=True)  # no deepcopy: pods nest deep
        assert isinstance(mutated, dict)
        assert outcome in (None, "mutated")
    else:
        assert set(response) <= {"uid", "allowed", "warnings"}
        assert outcome in (None, "unchanged")
