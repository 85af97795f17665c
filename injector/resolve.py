"""The injector's only Kubernetes API access: owner chains, Trials, Suggestions, Experiments, katib-config.

Reads go through lightkube (in-cluster service-account auth or a kubeconfig) with a bounded timeout, and a
short-lived single-flight cache, so a burst of pods of one trial costs one lookup per object.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx2
from lightkube import ApiError, Client, KubeConfig
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import PatchType

from katib_metrics.injector.cache import TtlCache
from katib_metrics.injector.config import CONFIGMAP_KEY, KatibConfig, load_katib_config
from katib_metrics.injector.errors import (
    ConfigError,
    ConflictError,
    EntrypointError,
    LookupFailedError,
    NotFoundError,
    RegistryError,
)
from katib_metrics.injector.imageref import Credential, credentials_from_secret
from katib_metrics.injector.mutate import ImageConfig
from katib_metrics.injector.trial import Algorithm, Trial, algorithm_from_object

__all__ = ["ApiResolver", "ImageSource", "KubeConfig", "KubeReader", "TtlCache", "default_namespace", "guess_plural",
           "kube_config"]

log = logging.getLogger(__name__)
TRIAL_API = "kubeflow.org/v1beta1"
MAX_OWNER_DEPTH = 8
# What the API server accepts in a URL path segment (`IsValidPathSegmentName`) and in a kind; an owner
# reference may still name anything, and an object by such a name cannot exist.
_SEGMENT = re.compile(r"[^/%\x00-\x20\x7f]+")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def guess_plural(kind: str) -> str:
    """apimachinery's `UnsafeGuessKindToResource` (what the API server's plural is for every built-in kind)."""
    singular = kind.lower()
    if singular.endswith("s"):
        return singular + "es"
    if singular.endswith("y"):
        return singular[:-1] + "ies"
    return singular + "s"


def kube_config(kubeconfig: str | None, env: Mapping[str, str]) -> KubeConfig:
    """`--kubeconfig`, else `KUBECONFIG`, else the in-cluster service account."""
    path = kubeconfig or env.get("KUBECONFIG")
    try:
        return KubeConfig.from_file(path) if path else KubeConfig.from_service_account()
    except Exception as err:  # lightkube raises several types for a bad or missing config
        where = f"kubeconfig {path}" if path else "the in-cluster service account"
        raise LookupFailedError(f"cannot load Kubernetes credentials from {where}: {err} "
                                "(pass --kubeconfig FILE outside a cluster)") from err


def default_namespace(config: KubeConfig) -> str:
    """The in-cluster service account's namespace, else the kubeconfig context's (`default` when unset)."""
    single = config.get()
    return str(single.namespace if single is not None and single.namespace else "default")


class KubeReader:
    """Objects by apiVersion/kind/namespace/name as plain dicts: GET, and the few writes of certificate bootstrap.

    An empty namespace means a cluster-scoped object (MutatingWebhookConfiguration).
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._untyped: Any = client  # lightkube's overloads cannot tell namespaced from global generic models

    @classmethod
    def connect(cls, config: KubeConfig, timeout: float) -> KubeReader:
        return cls(Client(config=config, timeout=httpx2.Timeout(timeout), lazy=False))

    @staticmethod
    def _model(api_version: str, kind: str, namespace: str) -> Any:
        group, _, version = api_version.rpartition("/")
        if not version:
            raise LookupFailedError(f"invalid owner API version: {api_version!r}")
        make = create_namespaced_resource if namespace else create_global_resource
        return resource_registry.get(api_version, kind) or make(group, version, kind, guess_plural(kind))

    @staticmethod
    def _call(what: str, verb: str, action: Callable[[], Any]) -> dict[str, Any]:
        try:
            obj: Any = action()
        except ApiError as err:
            code, message = (err.status.code, err.status.message) if err.status is not None else (None, str(err))
            if code == 404:
                raise NotFoundError(f"{what} not found") from err
            if code == 409:
                raise ConflictError(f"{verb} {what} failed: {message}") from err
            raise LookupFailedError(f"{verb} {what} failed: HTTP {code}: {message}") from err
        except (httpx2.HTTPError, httpx2.InvalidURL) as err:
            raise LookupFailedError(f"{verb} {what} failed: {type(err).__name__}: {err}") from err
        result: dict[str, Any] = obj.to_dict()
        return result

    @staticmethod
    def _check_names(api_version: str, kind: str, namespace: str, name: str) -> None:
        segments = [*api_version.split("/"), name] + ([namespace] if namespace else [])
        if not _KIND.fullmatch(kind) or any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
            raise NotFoundError(f"no {kind!r} {name!r} (apiVersion {api_version!r}) can exist in namespace "
                                f"{namespace!r}: not a valid object reference")

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self._check_names(api_version, kind, namespace, name)
        model = self._model(api_version, kind, namespace)
        options = {"namespace": namespace} if namespace else {}
        return self._call(f"{kind} {namespace}/{name}".replace(" /", " "), "reading",
                          lambda: self._client.get(model, name, **options))

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """POST; ConflictError when it already exists."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        model = self._model(str(obj.get("apiVersion")), str(obj.get("kind")), namespace)
        options = {"namespace": namespace} if namespace else {}
        return self._call(f"{obj.get('kind')} {namespace}/{meta.get('name')}", "creating",
                          lambda: self._untyped.create(model.from_dict(dict(obj)), **options))

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the object's resourceVersion; ConflictError when it changed since it was read."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        model = self._model(str(obj.get("apiVersion")), str(obj.get("kind")), namespace)
        options = {"namespace": namespace} if namespace else {}
        return self._call(f"{obj.get('kind')} {namespace}/{meta.get('name')}", "updating",
                          lambda: self._untyped.replace(model.from_dict(dict(obj)), **options))

    def json_patch(self, api_version: str, kind: str, namespace: str, name: str,
                   patch: list[dict[str, Any]]) -> dict[str, Any]:
        """PATCH with a JSON patch (RFC 6902)."""
        model = self._model(api_version, kind, namespace)
        options = {"namespace": namespace} if namespace else {}
        return self._call(f"{kind} {namespace}/{name}".replace(" /", " "), "patching",
                          lambda: self._untyped.patch(model, name, patch, patch_type=PatchType.JSON, **options))


class ImageSource(Protocol):
    """Where image entrypoints come from (`injector.registry.RegistryClient`)."""

    def image_config(self, image: str, credentials: Sequence[Credential]) -> ImageConfig:
        """The image's Entrypoint and Cmd; RegistryError when they cannot be read."""


def _secret_names(value: object) -> list[str]:
    """The names in an `imagePullSecrets` list (`[{name: ...}]`)."""
    if not isinstance(value, list):
        return []
    return [str(item["name"]) for item in value if isinstance(item, Mapping) and item.get("name")]


class ApiResolver:
    """`TrialResolver` over the Kubernetes API, with a cache of at most `ttl` seconds per object."""

    def __init__(self, reader: KubeReader, *, katib_namespace: str = "kubeflow",
                 static_config: KatibConfig | None = None, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, images: ImageSource | None = None) -> None:
        self._reader = reader
        self._namespace = katib_namespace
        self._static_config = static_config
        self._images = images
        self.cache = TtlCache(ttl, clock)

    def _get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        key = (api_version, kind, namespace, name)
        result: dict[str, Any] = self.cache.get(key, lambda: self._reader.get(api_version, kind, namespace, name))
        return result

    def _decoded(self, kind: str, namespace: str, name: str, decode: Callable[[dict[str, Any]], Any]) -> Any:
        """A Katib object read and decoded once per cache period (decoding a Trial costs more than the lookup)."""
        return self.cache.get(("decoded", kind, namespace, name),
                              lambda: decode(self._reader.get(TRIAL_API, kind, namespace, name)))

    def _trial_owner(self, obj: Mapping[str, Any], namespace: str, depth: int) -> str | None:
        owners = [o for o in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(o, Mapping)]
        for owner in owners:
            if owner.get("kind") == "Trial" and owner.get("apiVersion") == TRIAL_API:
                return str(owner.get("name") or "")
        if depth >= MAX_OWNER_DEPTH:
            return None
        for owner in owners:
            try:
                parent = self._get(str(owner.get("apiVersion") or ""), str(owner.get("kind") or ""), namespace,
                                   str(owner.get("name") or ""))
            except NotFoundError as err:
                # As Katib: an owner that does not exist cannot lead to a Trial; try the next one.
                log.info("owner %s/%s of a pod in %s not found: %s", owner.get("kind"), owner.get("name"),
                         namespace, err)
                continue
            except LookupFailedError as err:
                # Unlike Katib (which admits the pod without a collector): a timeout, 5xx or 403 may hide a
                # Trial, so the pod is denied and the job controller retries it.
                raise LookupFailedError(f"cannot read owner {owner.get('kind')} {namespace}/{owner.get('name')} "
                                        f"to find this pod's Trial: {err}") from err
            found = self._trial_owner(parent, namespace, depth + 1)
            if found:
                return found
        return None

    def find_trial(self, pod: Mapping[str, Any], namespace: str) -> Trial | None:
        name = self._trial_owner(pod, namespace, 0)
        if not name:
            return None
        try:
            trial: Trial = self._decoded("Trial", namespace, name, Trial.from_object)
            return trial
        except LookupFailedError as err:
            raise LookupFailedError(f"unable to read Trial {namespace}/{name}: {err}") from err

    def algorithm(self, trial: Trial, namespace: str) -> Algorithm | None:
        for kind in ("Suggestion", "Experiment"):
            try:
                algorithm: Algorithm | None = self._decoded(kind, namespace, trial.experiment, algorithm_from_object)
                return algorithm
            except LookupFailedError as err:
                log.info("cannot read %s %s/%s: %s", kind, namespace, trial.experiment, err)
        return None

    def katib_config(self) -> KatibConfig:
        """The static `--katib-config`, else the ConfigMap (re-read at most every `ttl`, as Katib re-reads it)."""
        if self._static_config is not None:
            return self._static_config
        where = f"ConfigMap {self._namespace}/katib-config"

        def load() -> KatibConfig:
            configmap = self._reader.get("v1", "ConfigMap", self._namespace, "katib-config")
            text = (configmap.get("data") or {}).get(CONFIGMAP_KEY)
            if text is None:
                raise ConfigError(f"{where} has no key {CONFIGMAP_KEY!r}")
            return load_katib_config(text, where)

        result: KatibConfig = self.cache.get(("katib-config", self._namespace), load)
        return result

    def pull_credentials(self, pod: Mapping[str, Any], namespace: str) -> list[Credential]:
        """The registry logins the kubelet would use for this pod: its imagePullSecrets, then its account's."""
        spec = pod.get("spec") or {}
        names = _secret_names(spec.get("imagePullSecrets"))
        account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        try:
            names += _secret_names(self._get("v1", "ServiceAccount", namespace, account).get("imagePullSecrets"))
        except LookupFailedError as err:
            log.info("service account %s/%s not read for pull secrets: %s", namespace, account, err)
        credentials: list[Credential] = []
        for name in dict.fromkeys(names):
            try:
                credentials += credentials_from_secret(self._get("v1", "Secret", namespace, name))
            except LookupFailedError as err:
                # Without `get` on Secrets (the chart does not grant it by default) only anonymous pulls work.
                log.warning("pull secret %s/%s not readable, trying without it: %s", namespace, name, err)
        return credentials

    def image_config(self, container: Mapping[str, Any], pod: Mapping[str, Any],
                     namespace: str) -> ImageConfig | None:
        image = str(container.get("image") or "")
        fix = "set `command` (and `args`) for the training container in the trial template"
        where = f"container {container.get('name')!r} has no `command` and the entrypoint of image {image!r}"
        if self._images is None:
            raise EntrypointError(f"{where} cannot be read: image registry lookups are off in this injector; {fix}")
        try:
            return self._images.image_config(image, self.pull_credentials(pod, namespace))
        except RegistryError as err:
            raise EntrypointError(f"{where} could not be read from its registry: {err}; {fix}") from err
