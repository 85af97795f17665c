"""Image references and pull-secret credentials, decoded for the registry client (pure).

`parse_image` follows the Docker reference grammar (`[registry[:port]/]path[:tag][@digest]`, Docker Hub by
default with `library/` for one-component names). `credentials_from_secret` reads a Kubernetes pull secret
(`.dockerconfigjson` or the legacy `.dockercfg`) and `matching` picks the entries that apply to a registry
and repository the way the kubelet's keyring does (host globs per label, optional path prefix).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DOCKER_HUB", "Credential", "ImageRef", "credentials_from_secret", "matching", "parse_image"]

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::\d+)?|\[[0-9a-fA-F:]+\](?::\d+)?")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """`registry` as written (Docker Hub is `docker.io`), `repository` with `library/` added, tag or digest."""

    registry: str
    repository: str
    tag: str = "latest"
    digest: str = ""

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when there is one, else the tag."""
        return self.digest or self.tag

    @property
    def host(self) -> str:
        """Where the distribution API lives."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise ValueError(f"invalid registry host {first!r}")
        registry = DOCKER_HUB if first in DOCKER_HUB_ALIASES else first
        return registry, rest
    return DOCKER_HUB, name


def parse_image(text: str) -> ImageRef:
    """The reference in a container's `image`; ValueError saying what is wrong with it."""
    name, _, digest = text.strip().partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r} in image {text!r}")
    registry, path = _split_domain(name)
    tag = "latest"
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ValueError(f"invalid tag {tag!r} in image {text!r}")
    components = path.split("/")
    if not path or not all(_COMPONENT.fullmatch(c) for c in components):
        raise ValueError(f"invalid repository name {path!r} in image {text!r} (lowercase letters, digits and "
                         "separators only)")
    if registry == DOCKER_HUB and len(components) == 1:
        path = f"library/{path}"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)


@dataclass(frozen=True, slots=True)
class Credential:
    """One pull-secret entry: the registry key it was stored under and its username/password."""

    key: str
    username: str
    password: str = ""

    def __repr__(self) -> str:  # never print the password
        return f"Credential(key={self.key!r}, username={self.username!r})"


def _entry(key: str, value: object) -> Credential | None:
    if not isinstance(value, Mapping):
        return None
    username, password = str(value.get("username") or ""), str(value.get("password") or "")
    auth = value.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, _, password = base64.b64decode(auth, validate=False).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return Credential(key=key, username=username, password=password) if username else None


def _decode_data(secret: Mapping[str, Any], key: str) -> Any:
    data = secret.get("data") or {}
    encoded = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(encoded, str):
        return None
    try:
        return json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError):
        return None


def credentials_from_secret(secret: Mapping[str, Any]) -> list[Credential]:
    """The entries of a pull secret (`.dockerconfigjson`, else `.dockercfg`); [] when it holds neither."""
    document = _decode_data(secret, ".dockerconfigjson")
    auths = document.get("auths") if isinstance(document, Mapping) else None
    if not isinstance(auths, Mapping):
        auths = _decode_data(secret, ".dockercfg")
    if not isinstance(auths, Mapping):
        return []
    found = (_entry(str(key), value) for key, value in auths.items())
    return [credential for credential in found if credential is not None]


def _key_parts(key: str) -> tuple[str, str]:
    """(host[:port], path) of a keyring key such as `https://index.docker.io/v1/` or `*.example.com/team`."""
    split = urlsplit(key if "://" in key else f"//{key}")
    host = split.netloc.lower()
    path = split.path.strip("/")
    if host in DOCKER_HUB_ALIASES:
        return DOCKER_HUB, ""  # Docker Hub's keys carry the API version (`/v1/`), not a repository prefix
    return host, path


def _host_matches(pattern: str, host: str) -> bool:
    pattern_host, _, pattern_port = pattern.partition(":")
    host_name, _, host_port = host.partition(":")
    if pattern_port != host_port:
        return False
    labels, wanted = pattern_host.split("."), host_name.split(".")
    return len(labels) == len(wanted) and all(fnmatch.fnmatchcase(w, p) for p, w in zip(labels, wanted, strict=True))


def matching(credentials: Iterable[Credential], ref: ImageRef) -> list[Credential]:
    """The credentials that apply to `ref`, most specific key (longest path prefix) first."""
    scored: list[tuple[int, int, Credential]] = []
    for index, credential in enumerate(credentials):
        host, path = _key_parts(credential.key)
        if not _host_matches(host, ref.registry.lower()):
            continue
        if path and ref.repository != path and not ref.repository.startswith(path + "/"):
            continue
        scored.append((-len(path), index, credential))
    return [credential for _, _, credential in sorted(scored, key=lambda item: item[:2])]


def unique(credentials: Sequence[Credential]) -> list[Credential]:
    """The credentials without repeats (the same secret listed on the pod and its service account)."""
    seen: set[tuple[str, str]] = set()
    result = []
    for credential in credentials:
        if (credential.username, credential.password) not in seen:
            seen.add((credential.username, credential.password))
            result.append(credential)
    return result
