"""Admission bodies decoded from a byte string ("genome"), so that Hypothesis draws one value per body.

Hypothesis spends about 0.1 ms per choice it draws; a body built from nested `one_of`/`recursive` strategies
costs 1.5 to 3.5 ms before it reaches the handler, too much for 10,000 of them in the default run. Here
Hypothesis draws bytes and `decode_body` reads its decisions from them: the first byte picks the family, each
later byte one choice (a table entry, a size, present or not). Bytes past the end read as 0, and entry 0 of every
table is the simplest choice, so Hypothesis shrinks a failing genome to a short, readable body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tests.injector import factories as f

T = TypeVar("T")
API_VERSION = "admission.k8s.io/v1"

SCALARS: tuple[Any, ...] = (
    None, "", 0, True, False, 1, -1, 0.5, -0.0, 1e308, 2**63, 2**64, -(2**63) - 1, "a", "training-container",
    "python", "train.py", "$(EPOCHS)", "$$(X)", "$(", "a b", "'\"", ";", "&&", "\n", "é", "\u0000", "\ud800",
    "team-a", "exp-abc12", "Job", "batch/v1", "kubeflow.org/v1beta1", "Trial", "Pod", "/", "~1", "-", "..",
)
KEYS: tuple[str, ...] = (
    "", "name", "metadata", "spec", "containers", "command", "args", "image", "env", "value", "labels",
    "annotations", "ownerReferences", "kind", "apiVersion", "controller", "namespace", "uid", "volumes",
    "volumeMounts", "mountPath", "securityContext", "runAsUser", "initContainers", "restartPolicy",
    "shareProcessNamespace", "training.kubeflow.org/job-role", "valueFrom", "emptyDir", "object", "request",
)
DEPTHS = (1, 2, 30, 500, 900, 990, 1000, 1100, 5000)
API_VERSIONS: tuple[Any, ...] = (API_VERSION, "admission.k8s.io/v1beta1", "", None, 1, ["x"])
KINDS: tuple[Any, ...] = ("AdmissionReview", "Pod", "", None, {})


def _sample_pod() -> dict[str, Any]:
    pod = f.pod(args=["--epochs", "$(EPOCHS)"], extra=[{"name": "helper", "image": "busybox"}],
                labels={"training.kubeflow.org/job-role": "master"})
    spec = pod["spec"]
    spec["containers"][0]["env"] = [{"name": "EPOCHS", "value": "3"}]
    spec["containers"][0]["securityContext"] = {"runAsUser": 1000}
    spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return pod


SAMPLE_POD = json.dumps(_sample_pod())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    for key, child in items:
        found += _paths(child, (*prefix, key))
    return found


POD_PATHS = _paths(json.loads(SAMPLE_POD))


class Genome:
    """The decisions of one body, read one byte each; 0 once the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def pick(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def chance(self, eighths: int) -> bool:
        """True with probability `eighths`/8 over uniform bytes (and False for the zero genome)."""
        return self.byte() % 8 >= 8 - eighths

    def rest(self) -> bytes:
        return self.data[self.pos:]


def json_value(g: Genome, depth: int = 0) -> Any:
    shape = g.byte() % 8
    if shape < 5 or depth >= 4:
        return g.pick(SCALARS)
    size = g.byte() % 4
    if shape == 5:
        return [json_value(g, depth + 1) for _ in range(size)]
    if shape == 6:
        return {g.pick(KEYS): json_value(g, depth + 1) for _ in range(size)}
    return "".join(str(g.pick(SCALARS)) for _ in range(size))


def _maybe(g: Genome, good: Callable[[], Any]) -> Any:
    """The field as it should be (most often), or random JSON in its place."""
    return json_value(g) if g.chance(2) else good()


def _nested(depth: int, dicts: bool) -> bytes:
    return b'{"a":' * depth + b"0" + b"}" * depth if dicts else b"[" * depth + b"]" * depth


def _container(g: Genome) -> dict[str, Any]:
    container: dict[str, Any] = {"name": _maybe(g, lambda: g.pick(("training-container", "helper", "")))}
    for key, good in (("image", lambda: "python:3.11"), ("command", lambda: ["python", "train.py"]),
                      ("args", lambda: [g.pick(SCALARS) for _ in range(g.byte() % 3)]),
                      ("env", lambda: [{"name": "EPOCHS", "value": "3"}]),
                      ("volumeMounts", lambda: [{"name": "data", "mountPath": "/data"}]),
                      ("securityContext", lambda: {"runAsUser": 1000})):
        if g.chance(5):
            container[key] = _maybe(g, good)
    return container


def _pod_skeleton(g: Genome) -> dict[str, Any]:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "exp-abc12", "controller": True}
    metadata = {"namespace": _maybe(g, lambda: "team-a"), "labels": _maybe(g, dict),
                "ownerReferences": _maybe(g, lambda: [owner] if g.chance(6) else [])}
    spec = {"containers": _maybe(g, lambda: [_container(g) for _ in range(g.byte() % 3)]),
            "volumes": _maybe(g, list), "shareProcessNamespace": _maybe(g, lambda: False)}
    pod: dict[str, Any] = {"kind": _maybe(g, lambda: "Pod")}
    for key, value in (("metadata", metadata), ("spec", spec)):
        if g.chance(7):
            pod[key] = json_value(g) if g.chance(1) else value
    return pod


def _corrupted_pod(g: Genome) -> dict[str, Any]:
    """The sample trial pod with 1 to 3 fields replaced by random JSON or removed (when still there)."""
    pod: dict[str, Any] = json.loads(SAMPLE_POD)
    for _ in range(1 + g.byte() % 3):
        path = g.pick(POD_PATHS)
        parent: Any = pod
        try:
            for key in path[:-1]:
                parent = parent[key]
            if g.chance(2):
                del parent[path[-1]]
            else:
                parent[path[-1]] = json_value(g)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this path
    return pod


def _review(g: Genome, pod: Any) -> bytes:
    request: dict[str, Any] = {"uid": _maybe(g, lambda: f"uid-{g.byte()}"), "object": pod}
    if g.chance(6):
        request["namespace"] = _maybe(g, lambda: "team-a")
    if g.chance(4):
        request["operation"] = _maybe(g, lambda: "CREATE")
    return json.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request}).encode()


def _malformed_review(g: Genome) -> bytes:
    review: dict[str, Any] = {}
    for key, options in (("apiVersion", API_VERSIONS), ("kind", KINDS)):
        if g.chance(6):
            review[key] = g.pick(options)
    if g.chance(6):
        review["request"] = {g.pick(KEYS): json_value(g) for _ in range(g.byte() % 5)}
    return json.dumps(review).encode()


def _deep_pod_review(g: Genome) -> bytes:
    marker = "\u0000deep"
    path = g.pick(POD_PATHS)
    pod: dict[str, Any] = json.loads(SAMPLE_POD)
    parent: Any = pod
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = marker
    body = _review(g, pod)
    return body.replace(json.dumps(marker).encode(), _nested(g.pick(DEPTHS), g.chance(4)))


def _encoded(g: Genome, body: bytes) -> bytes:
    """Mostly as is; sometimes truncated, re-encoded as UTF-16 or UTF-8 with a BOM, or with a stray byte."""
    twist = g.byte() % 16
    if twist == 1:
        return body[:g.byte() * len(body) // 256]
    if twist == 2:
        return body.decode().encode("utf-16")
    if twist == 3:
        return b"\xef\xbb\xbf" + body
    if twist == 4:
        cut = g.byte() * len(body) // 256
        return body[:cut] + b"\xff" + body[cut:]
    return body


FAMILIES: tuple[Callable[[Genome], bytes], ...] = (
    lambda g: _review(g, _corrupted_pod(g)),
    lambda g: _review(g, _pod_skeleton(g)),
    lambda g: _review(g, json_value(g)),
    _malformed_review,
    lambda g: json.dumps(json_value(g)).encode(),
    lambda g: _nested(g.pick(DEPTHS), g.chance(4)),
    _deep_pod_review,
    Genome.rest,
)


def decode_body(data: bytes) -> bytes:
    """The admission request body `data` describes (see the module docstring)."""
    g = Genome(data)
    family = g.pick(FAMILIES)
    body = family(g)
    return body if family in (FAMILIES[5], FAMILIES[7]) else _encoded(g, body)
