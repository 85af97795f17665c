"""Reads an image's Entrypoint and Cmd from its registry (OCI distribution API over HTTPS), for pods without `command`.

manifest (an index or manifest list picks the configured platform, linux/amd64 by default) → config blob →
`config.Entrypoint` / `config.Cmd`. Authentication as `docker pull` does it: anonymous or a pull secret's
username/password, Basic or through the registry's Bearer token challenge. Candidates are tried in order (the
pull secrets that match the registry, then anonymous) until one is let in. Every lookup shares one deadline,
bodies are size-bounded and digest-checked, every URL (image, token realm, redirect) passes `injector.egress`
(https only, no loopback, link-local or metadata addresses, credentials kept to one origin), and results are
cached (by digest for a long time, by tag briefly). Errors: `RegistryError`, `RegistryAuthError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from katib_metrics.injector.cache import TtlCache
from katib_metrics.injector.egress import (
    AddressPolicy,
    GuardedHTTPHandler,
    GuardedHTTPSHandler,
    NoRedirect,
    Resolver,
    check_target,
    same_origin,
)
from katib_metrics.injector.errors import RegistryAuthError, RegistryError
from katib_metrics.injector.imageref import Credential, ImageRef, matching, parse_image, unique
from katib_metrics.injector.mutate import ImageConfig

__all__ = ["RegistryClient", "parse_challenge"]

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+prettyjws",
                  "application/vnd.docker.distribution.manifest.v1+json")
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST, *DOCKER_SCHEMA1])
MAX_MANIFEST = 4 * 1024 * 1024
MAX_CONFIG = 16 * 1024 * 1024
MAX_REDIRECTS = 5
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """(scheme in lowercase, params) of a `WWW-Authenticate` header such as `Bearer realm="...",service="..."`."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]).replace('\\"', '"')
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def _basic(credential: Credential) -> str:
    return "Basic " + base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()


def _who(credential: Credential | None) -> str:
    return f"as {credential.username!r} (pull secret key {credential.key})" if credential else "anonymously"


def _verify_digest(body: bytes, digest: str, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    if algorithm == "sha256" and hashlib.sha256(body).hexdigest() != expected.lower():
        raise RegistryError(f"{what} does not match its digest {digest}")


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RegistryError(f"{where} must be a list of strings")
    return tuple(value)


def _image_config(document: object, image: ImageRef) -> ImageConfig:
    config = document.get("config") if isinstance(document, Mapping) else None
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise RegistryError(f"the config of image {image} is not a JSON object")
    return ImageConfig(entrypoint=_strings(config.get("Entrypoint"), f"Entrypoint of image {image}"),
                       cmd=_strings(config.get("Cmd"), f"Cmd of image {image}"))


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as err:
        raise RegistryError(f"{what} is not JSON: {err}") from None


class _Session:
    """One attempt to read one image with one credential (or none), within the lookup's deadline."""

    def __init__(self, client: RegistryClient, image: ImageRef, credential: Credential | None,
                 deadline: float) -> None:
        self.client = client
        self.image = image
        self.credential = credential
        self.deadline = deadline
        self.scheme = "http" if image.registry.lower() in client.insecure_registries else "https"
        self.authorization: str | None = None

    # -- HTTP -----------------------------------------------------------------------------------------------

    def _remaining(self) -> float:
        remaining = self.deadline - self.client.clock()
        if remaining <= 0:
            raise RegistryError(f"registry {self.image.registry} did not answer within {self.client.timeout:g} s")
        return remaining

    def _open(self, url: str, headers: Mapping[str, str]) -> Any:
        request = urllib.request.Request(url, headers=dict(headers))
        try:
            return self.client.opener.open(request, timeout=self._remaining())
        except urllib.error.HTTPError as err:
            return err  # a response too: its status, headers and body are what the caller judges
        except urllib.error.URLError as err:
            reason: object = err.reason
        except OSError as err:
            reason = err
        host = urlsplit(url).netloc
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise RegistryError(f"registry {host} did not answer within {self.client.timeout:g} s")
        raise RegistryError(f"cannot reach registry {host}: {reason}")

    def _read(self, response: Any, limit: int, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := response.read(65536):
                size += len(chunk)
                if size > limit:
                    raise RegistryError(f"{url} sent more than {limit} bytes")
                chunks.append(chunk)
                self._remaining()
        except (OSError, ValueError) as err:
            raise RegistryError(f"reading {url} failed: {err}") from None
        finally:
            response.close()
        return b"".join(chunks)

    def send(self, url: str, headers: dict[str, str], limit: int) -> tuple[int, Any, bytes]:
        """(status, headers, body), redirects followed (at most MAX_REDIRECTS, each checked by
        `RegistryClient.check_target`); Authorization is dropped on any change of scheme, host or port."""
        for _ in range(MAX_REDIRECTS + 1):
            self.client.check_target(url)
            response = self._open(url, headers)
            status = int(getattr(response, "status", None) or response.code)
            if status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                target = urljoin(url, response.headers["Location"])
                response.close()
                if not same_origin(target, url):
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = target
                continue
            return status, response.headers, self._read(response, limit, url)
        raise RegistryError(f"registry {self.image.registry} redirected more than {MAX_REDIRECTS} times")

    # -- authentication ---------------------------------------------------------------------------------------

    def _token(self, params: Mapping[str, str]) -> str:
        realm = params.get("realm", "")
        if urlsplit(realm).scheme not in ("https", "http"):
            raise RegistryError(f"registry {self.image.registry} sends for tokens to {realm!r}, not an https URL")
        query = {k: v for k, v in (("service", params.get("service", "")),
                                    ("scope", params.get("scope") or f"repository:{self.image.repository}:pull"))
                 if v}
        key = (realm, query.get("service"), query.get("scope"), self.credential)
        cached = self.client.cached_token(key)
        if cached:
            return cached
        headers = {"Accept": "application/json"}
        if self.credential is not None:
            headers["Authorization"] = _basic(self.credential)
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        status, _, body = self.send(url, headers, 1024 * 1024)
        if status in (401, 403):
            raise RegistryAuthError(f"the token service of {self.image.registry} refused the login "
                                    f"{_who(self.credential)}")
        if status != 200:
            raise RegistryError(f"the token service {realm} answered HTTP {status}")
        document = _json(body, f"the token from {realm}")
        token = document.get("token") or document.get("access_token") if isinstance(document, Mapping) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service {realm} sent no token")
        expires = document.get("expires_in")
        self.client.keep_token(key, token, float(expires) if isinstance(expires, int | float) else 60.0)
        return token

    def _authorize(self, challenge: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "bearer":
            return "Bearer " + self._token(params)
        if scheme == "basic":
            if self.credential is None:
                raise RegistryAuthError(f"registry {self.image.registry} requires a login (Basic) and the pod has "
                                        "no pull secret for it")
            return _basic(self.credential)
        raise RegistryError(f"registry {self.image.registry} asks for unsupported authentication {challenge!r}")

    def get(self, path: str, accept: str, limit: int, what: str) -> tuple[str, bytes]:
        """(content type, body) of `/v2/<repository>/<path>`, authenticating when challenged."""
        url = f"{self.scheme}://{self.image.host}/v2/{self.image.repository}/{path}"
        for attempt in range(2):
            headers = {"Accept": accept}
            if self.authorization:
                headers["Authorization"] = self.authorization
            status, response_headers, body = self.send(url, headers, limit)
            challenge = response_headers.get("WWW-Authenticate")
            if status == 401 and challenge and attempt == 0:
                self.authorization = self._authorize(challenge)
                continue
            break
        if status in (401, 403, 404):
            raise RegistryAuthError(f"registry {self.image.registry} answered HTTP {status} for {what} "
                                    f"{_who(self.credential)}")
        if status != 200:
            raise RegistryError(f"registry {self.image.registry} answered HTTP {status} for {what}")
        return response_headers.get("Content-Type", "").split(";")[0].strip(), body

    # -- the image --------------------------------------------------------------------------------------------

    def manifest(self, reference: str) -> tuple[str, Any]:
        what = f"the manifest of {self.image.registry}/{self.image.repository}@{reference}" if ":" in reference \
            else f"the manifest of {self.image}"
        media_type, body = self.get(f"manifests/{reference}", MANIFEST_ACCEPT, MAX_MANIFEST, what)
        if ":" in reference:
            _verify_digest(body, reference, what)
        document = _json(body, what)
        if not isinstance(document, Mapping):
            raise RegistryError(f"{what} is not a JSON object")
        if media_type not in (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST, *DOCKER_SCHEMA1):
            media_type = str(document.get("mediaType") or "")
        if not media_type:
            media_type = OCI_INDEX if "manifests" in document else DOCKER_SCHEMA1[0] \
                if document.get("schemaVersion") == 1 else OCI_MANIFEST
        return media_type, document

    def pick_platform(self, index: Mapping[str, Any]) -> str:
        want = self.client.platform
        offered = []
        for entry in index.get("manifests") or []:
            platform = entry.get("platform") or {} if isinstance(entry, Mapping) else {}
            parts = (str(platform.get("os", "")), str(platform.get("architecture", "")),
                     str(platform.get("variant", "")))
            offered.append("/".join(p for p in parts if p))
            if parts[:2] == want[:2] and (not want[2] or parts[2] == want[2]) and entry.get("digest"):
                return str(entry["digest"])
        raise RegistryError(f"image {self.image} has no {'/'.join(p for p in want if p)} variant (it has: "
                            f"{', '.join(offered) or 'none'}); set --image-platform or `command`")

    def config(self) -> ImageConfig:
        media_type, document = self.manifest(self.image.reference)
        if media_type in (OCI_INDEX, DOCKER_LIST):
            media_type, document = self.manifest(self.pick_platform(document))
        if media_type in DOCKER_SCHEMA1:
            history = document.get("history") or [{}]
            return _image_config(_json(str(history[0].get("v1Compatibility") or "{}").encode(), "v1Compatibility"),
                                 self.image)
        descriptor = document.get("config")
        digest = descriptor.get("digest") if isinstance(descriptor, Mapping) else None
        if not isinstance(digest, str) or not digest:
            raise RegistryError(f"the manifest of {self.image} names no config blob")
        what = f"the config blob of {self.image}"
        _, body = self.get(f"blobs/{digest}", "application/octet-stream, */*", MAX_CONFIG, what)
        _verify_digest(body, digest, what)
        return _image_config(_json(body, what), self.image)


class RegistryClient:
    """`image_config(image, credentials)`; thread-safe, with a result cache and a token cache."""

    def __init__(self, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None,
                 insecure_registries: Sequence[str] = (), platform: str = "linux/amd64",
                 tag_ttl: float = 600.0, digest_ttl: float = 86400.0,
                 clock: Callable[[], float] = time.monotonic, allow_local: Sequence[str] = (),
                 resolver: Resolver | None = None) -> None:
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"image platform must be OS/ARCH[/VARIANT] (e.g. linux/amd64), got {platform!r}")
        self.platform = (parts[0], parts[1], parts[2] if len(parts) == 3 else "")
        self.timeout = timeout
        self.clock = clock
        self.insecure_registries = frozenset(entry.lower() for entry in insecure_registries)
        self.policy = AddressPolicy(allow_local, resolver)
        self.opener = urllib.request.build_opener(
            GuardedHTTPSHandler(ssl_context or ssl.create_default_context(), self.policy),
            GuardedHTTPHandler(self.policy), NoRedirect())
        self._proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
        self._tag_ttl, self._digest_ttl = tag_ttl, digest_ttl
        self._cache = TtlCache(tag_ttl, clock)
        self._tokens: dict[object, tuple[float, str]] = {}
        self._tokens_lock = threading.Lock()
        self.fetches = 0

    def check_target(self, url: str) -> None:
        """RegistryError unless `url` may be fetched (see `injector.egress.check_target`)."""
        check_target(url, self.insecure_registries, self._proxies, self.policy)

    def cached_token(self, key: object) -> str | None:
        with self._tokens_lock:
            entry = self._tokens.get(key)
            return entry[1] if entry is not None and entry[0] > self.clock() else None

    def keep_token(self, key: object, token: str, seconds: float) -> None:
        with self._tokens_lock:
            self._tokens[key] = (self.clock() + max(0.0, seconds * 0.9), token)

    def image_config(self, image: str, credentials: Sequence[Credential] = ()) -> ImageConfig:
        """The Entrypoint and Cmd of `image`; RegistryError (RegistryAuthError when no login worked)."""
        try:
            ref = parse_image(image)
        except ValueError as err:
            raise RegistryError(str(err)) from None
        candidates: list[Credential | None] = [*unique(matching(credentials, ref)), None]
        key = (str(ref), tuple((c.username, hashlib.sha256(c.password.encode()).hexdigest())
                               for c in candidates if c is not None))
        ttl = self._digest_ttl if ref.digest else self._tag_ttl
        result: ImageConfig = self._cache.get(key, lambda: self._fetch(ref, candidates), ttl)
        return result

    def _fetch(self, ref: ImageRef, candidates: Sequence[Credential | None]) -> ImageConfig:
        self.fetches += 1
        deadline = self.clock() + self.timeout
        refusals = []
        for credential in candidates:
            try:
                return _Session(self, ref, credential, deadline).config()
            except RegistryAuthError as err:
                log.info("registry lookup of %s %s refused: %s", ref, _who(credential), err)
                refusals.append(str(err))
        raise RegistryAuthError("; ".join(refusals))
