"""One admission, end to end: decode the review, find the pod's Trial, mutate, encode the answer (no I/O itself).

The Kubernetes reads happen behind the `TrialResolver` protocol, so the HTTPS server only decodes, calls and
encodes, and tests can resolve from a local API server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from katib_metrics.injector.config import KatibConfig
from katib_metrics.injector.errors import DeniedError, InjectorError, LookupFailedError
from katib_metrics.injector.mutate import ImageConfig, Resolved, entrypoint_container, mutate_pod
from katib_metrics.injector.patch import json_patch
from katib_metrics.injector.review import InvalidReview, allowed, decode_review, denied, invalid, patched
from katib_metrics.injector.sidecar import SidecarOptions
from katib_metrics.injector.trial import Algorithm, CollectorKind, Trial

__all__ = ["OUTCOMES", "AdmissionHandler", "Answer", "TrialResolver"]

log = logging.getLogger(__name__)
OUTCOMES = ("mutated", "unchanged", "denied", "invalid")


class TrialResolver(Protocol):
    """What the admission needs from the cluster."""

    def find_trial(self, pod: Mapping[str, Any], namespace: str) -> Trial | None:
        """The Trial owning the pod (through ownerReferences), None when the pod is not a trial's."""

    def algorithm(self, trial: Trial, namespace: str) -> Algorithm | None:
        """The Suggestion's (else the Experiment's) algorithm, None when neither can be read."""

    def katib_config(self) -> KatibConfig: ...

    def image_config(self, container: Mapping[str, Any], pod: Mapping[str, Any],
                     namespace: str) -> ImageConfig | None:
        """The image's Entrypoint/Cmd; EntrypointError (or None) when they cannot be read."""


@dataclass(frozen=True, slots=True)
class Answer:
    review: dict[str, Any]
    outcome: str


class AdmissionHandler:
    def __init__(self, resolver: TrialResolver, options: SidecarOptions) -> None:
        self._resolver = resolver
        self._options = options

    def handle(self, body: bytes) -> Answer:
        try:
            request = decode_review(body)
        except InvalidReview as err:
            return Answer(invalid(err), "invalid")
        try:
            return self._admit(request.uid, request.pod, request.namespace)
        except DeniedError as err:
            log.info("denied pod in %s: %s", request.namespace, err)
            return Answer(denied(request.uid, str(err)), "denied")
        except InjectorError as err:
            log.warning("denied pod in %s: %s", request.namespace, err)
            return Answer(denied(request.uid, str(err), 500), "denied")
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as err:
            # A pod shaped unlike any the API server would send: answer, never crash the connection.
            return Answer(invalid(InvalidReview(f"unexpected pod shape: {err!r}", request.uid)), "invalid")
        except RecursionError:
            return Answer(invalid(InvalidReview("the pod nests too deeply to be a Kubernetes Pod", request.uid)),
                          "invalid")

    def _resolve(self, pod: Mapping[str, Any], trial: Trial, namespace: str) -> Resolved:
        algorithm = self._resolver.algorithm(trial, namespace)
        container = entrypoint_container(pod, trial)
        image = self._resolver.image_config(container, pod, namespace) if container is not None else None
        return Resolved(algorithm=algorithm, image_config=image)

    def _admit(self, uid: str, pod: Mapping[str, Any], namespace: str) -> Answer:
        try:
            trial = self._resolver.find_trial(pod, namespace)
        except LookupFailedError as err:
            raise LookupFailedError(f"cannot read the Trial of this pod: {err}") from err
        if trial is None:
            return Answer(allowed(uid), "unchanged")
        if trial.kind is CollectorKind.PUSH:  # as Katib: no katib-config, Suggestion or image for a Push pod
            config, resolved = KatibConfig(), Resolved()
        else:
            config, resolved = self._resolver.katib_config(), self._resolve(pod, trial, namespace)
        mutation = mutate_pod(pod, trial, config, self._options, resolved, namespace)
        if not mutation.changed:
            return Answer(allowed(uid), "unchanged")
        log.info("%s", mutation.summary)
        return Answer(patched(uid, json_patch(pod, mutation.pod)), "mutated")
