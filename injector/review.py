"""AdmissionReview v1 in and out: decode a request body, encode allowed/patched/denied/invalid responses."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AdmissionRequest", "InvalidReview", "allowed", "decode_review", "denied", "invalid", "patched"]

API_VERSION = "admission.k8s.io/v1"


class InvalidReview(ValueError):
    """The body is not an AdmissionReview v1 request for a pod; the message says what is wrong."""

    def __init__(self, message: str, uid: str = "") -> None:
        super().__init__(message)
        self.uid = uid


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    uid: str
    namespace: str
    operation: str
    pod: Mapping[str, Any]


def _uid(request: Mapping[str, Any]) -> str:
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise InvalidReview("request.uid must be a non-empty string")
    return uid


def decode_review(body: bytes) -> AdmissionRequest:
    """The pod admission request in `body`; InvalidReview when it is anything else."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidReview(f"body is not JSON: {err}") from None
    except RecursionError:
        raise InvalidReview("body nests JSON arrays or objects too deeply to be a Kubernetes object") from None
    if not isinstance(review, dict):
        raise InvalidReview("body must be a JSON object (an AdmissionReview)")
    request = review.get("request")
    if not isinstance(request, dict):
        raise InvalidReview("AdmissionReview has no `request` object")
    uid = _uid(request)
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise InvalidReview(f"expected apiVersion {API_VERSION} kind AdmissionReview, got "
                            f"{review.get('apiVersion')!r} {review.get('kind')!r}", uid)
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise InvalidReview("request.object must be the Pod being created", uid)
    if pod.get("kind", "Pod") != "Pod" or not isinstance(pod.get("spec", {}), dict):
        raise InvalidReview(f"request.object must be a Pod, got kind {pod.get('kind')!r}", uid)
    metadata = pod.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidReview(f"request.object.metadata must be an object, got {type(metadata).__name__}", uid)
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    if not isinstance(namespace, str):
        raise InvalidReview("request.namespace must be a string", uid)
    return AdmissionRequest(uid, namespace, str(request.get("operation") or ""), pod)


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def allowed(uid: str, message: str = "") -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if message:
        response["warnings"] = [message]
    return _review(response)


def patched(uid: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return _review({"uid": uid, "allowed": True, "patchType": "JSONPatch", "patch": encoded})


def denied(uid: str, message: str, code: int = 400) -> dict[str, Any]:
    return _review({"uid": uid, "allowed": False,
                    "status": {"code": code, "message": message, "status": "Failure"}})


def invalid(error: InvalidReview) -> dict[str, Any]:
    return denied(error.uid, f"malformed AdmissionReview: {error}", 400)
