"""Image entrypoints from a real local HTTPS registry: references, pull secrets, token challenge, redirects, limits."""

from __future__ import annotations

import base64
import json
import pathlib
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from katib_metrics.injector.certs import issue_certificates, server_context
from katib_metrics.injector.errors import RegistryAuthError, RegistryError
from katib_metrics.injector.imageref import Credential, ImageRef, credentials_from_secret, matching, parse_image
from katib_metrics.injector.mutate import ImageConfig
from katib_metrics.injector.registry import RegistryClient, parse_challenge
from katib_metrics.injector.server import client_context
from tests.injector.registry_server import DOCKER_MANIFEST, FakeRegistry

TLS = tuple[ssl.SSLContext, ssl.SSLContext]  # (server, client) contexts


@pytest.mark.parametrize(("text", "expected"), [
    ("python", ImageRef("docker.io", "library/python", "latest")),
    ("python:3.11-slim", ImageRef("docker.io", "library/python", "3.11-slim")),
    ("kubeflowkatib/mxnet-mnist:v1", ImageRef("docker.io", "kubeflowkatib/mxnet-mnist", "v1")),
    ("docker.io/library/busybox", ImageRef("docker.io", "library/busybox")),
    ("index.docker.io/busybox", ImageRef("docker.io", "library/busybox")),
    ("ghcr.io/kubeflow/katib/file-metrics-collector:v0.18.0",
     ImageRef("ghcr.io", "kubeflow/katib/file-metrics-collector", "v0.18.0")),
    ("localhost:5000/train", ImageRef("localhost:5000", "train")),
    ("registry.example.com:8443/team/train:1.0@sha256:" + "a" * 64,
     ImageRef("registry.example.com:8443", "team/train", "1.0", "sha256:" + "a" * 64)),
])
def test_parse_image(text: str, expected: ImageRef) -> None:
    assert parse_image(text) == expected


@pytest.mark.parametrize("text", ["", "Python", "python:", "a//b", "python@sha256:xyz", "python:bad tag"])
def test_parse_image_rejects_invalid_references(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_image(text)


def dockerconfig_secret(auths: dict[str, dict[str, str]], key: str = ".dockerconfigjson") -> dict[str, object]:
    document = {"auths": auths} if key == ".dockerconfigjson" else auths
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "data": {key: encoded}}


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_pull_secret_formats() -> None:
    modern = credentials_from_secret(dockerconfig_secret({"ghcr.io": auth("ann", "pa:ss")}))
    assert [(c.key, c.username, c.password) for c in modern] == [("ghcr.io", "ann", "pa:ss")]
    legacy = credentials_from_secret(dockerconfig_secret({"https://index.docker.io/v1/": auth("bob", "x")},
                                                         ".dockercfg"))
    assert [(c.username, c.password) for c in legacy] == [("bob", "x")]
    fields = credentials_from_secret(dockerconfig_secret({"r.io": {"username": "u", "password": "p"}}))
    assert [(c.username, c.password) for c in fields] == [("u", "p")]
    assert credentials_from_secret({"data": {"tls.crt": "eA=="}}) == []
    assert "pa:ss" not in repr(modern[0])


def test_credentials_match_like_the_kubelet_keyring() -> None:
    hub, ghcr, team, wild, port = (Credential("https://index.docker.io/v1/", "hub"), Credential("ghcr.io", "gh"),
                                   Credential("ghcr.io/team", "team"), Credential("*.example.com", "wild"),
                                   Credential("https://r.example.com:5000", "port"))
    every = [hub, ghcr, team, wild, port]
    assert matching(every, parse_image("python")) == [hub]
    assert matching(every, parse_image("ghcr.io/team/train")) == [team, ghcr]
    assert matching(every, parse_image("ghcr.io/other/train")) == [ghcr]
    assert matching(every, parse_image("r.example.com/x")) == [wild]
    assert matching(every, parse_image("r.example.com:5000/x")) == [port]
    assert matching(every, parse_image("a.b.example.com/x")) == []


def test_parse_challenge() -> None:
    assert parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:library/python:pull"') == (
        "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                   "scope": "repository:library/python:pull"})
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    directory: pathlib.Path = tmp_path_factory.mktemp("registry-tls")
    issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
    for name, data in (("ca.crt", issued.ca_pem), ("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
        (directory / name).write_bytes(data)
    return (server_context(str(directory / "tls.crt"), str(directory / "tls.key")),
            client_context(str(directory / "ca.crt")))


def start(registry: FakeRegistry) -> FakeRegistry:
    threading.Thread(target=registry.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return registry


@pytest.fixture
def registry(tls: TLS) -> Iterator[FakeRegistry]:
    server = start(FakeRegistry(tls[0]))
    yield server
    server.shutdown()
    server.server_close()


def client(tls: TLS, registry: FakeRegistry, timeout: float = 10.0) -> RegistryClient:
    """A client that may reach the local registry (and its storage host), nothing else on loopback."""
    return RegistryClient(ssl_context=tls[1], timeout=timeout, allow_local=registry.local_hosts)


TRAIN = {"Entrypoint": ["python", "-u"], "Cmd": ["train.py", "--epochs=$(EPOCHS)"], "Env": ["A=1"]}


def test_public_multi_platform_image_anonymously(registry: FakeRegistry, tls: TLS) -> None:
    registry.push_index("team/train", "v1", {"linux/arm64/v8": {"Entrypoint": ["arm"]}, "linux/amd64": TRAIN})
    images = client(tls, registry)
    config = images.image_config(f"{registry.host}/team/train:v1")
    assert config == ImageConfig(entrypoint=("python", "-u"), cmd=("train.py", "--epochs=$(EPOCHS)"))
    assert registry.hits["/token"] == 1
    assert registry.storage_saw_authorization == 0  # the token stayed with the registry host
    arm = RegistryClient(ssl_context=tls[1], platform="linux/arm64/v8",
                         allow_local=registry.local_hosts).image_config(f"{registry.host}/team/train:v1")
    assert arm.entrypoint == ("arm",)


def test_results_are_cached(registry: FakeRegistry, tls: TLS) -> None:
    manifest = registry.push("team/train", "v2", TRAIN)
    images = client(tls, registry)
    for _ in range(3):
        images.image_config(f"{registry.host}/team/train:v2")
    images.image_config(f"{registry.host}/team/train@{manifest}")
    assert images.fetches == 2
    assert registry.hits["/v2/team/train/manifests/v2"] == 2  # challenged once, then answered


def test_concurrent_lookups_of_one_image_cost_one_fetch(registry: FakeRegistry,
                                                        tls: TLS) -> None:
    registry.push("team/train", "v3", TRAIN)
    images = client(tls, registry)
    results: list[ImageConfig] = []
    threads = [threading.Thread(target=lambda: results.append(images.image_config(f"{registry.host}/team/train:v3")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(results) == 8 and images.fetches == 1


def test_private_image_needs_the_pull_secret(registry: FakeRegistry, tls: TLS) -> None:
    registry.push("secret/train", "v1", TRAIN, media_type=DOCKER_MANIFEST)
    registry.private.add("secret/train")
    registry.users["ann"] = "s3cret"
    image = f"{registry.host}/secret/train:v1"
    with pytest.raises(RegistryAuthError, match=r"HTTP 401 .* anonymously"):
        client(tls, registry).image_config(image)
    wrong = Credential(registry.host, "ann", "nope")
    with pytest.raises(RegistryAuthError, match="refused the login as 'ann'"):
        client(tls, registry).image_config(image, [wrong])
    other_registry = Credential("ghcr.io", "ann", "s3cret")
    right = Credential(f"https://{registry.host}", "ann", "s3cret")
    config = client(tls, registry).image_config(image, [other_registry, wrong, right])
    assert config.entrypoint == ("python", "-u")


def test_basic_auth_registry(tls: TLS) -> None:
    registry = start(FakeRegistry(tls[0], auth="basic"))
    try:
        registry.push("secret/train", "v1", {"Cmd": ["./run.sh"]})
        registry.private.add("secret/train")
        registry.users["ann"] = "pw"
        image = f"{registry.host}/secret/train:v1"
        with pytest.raises(RegistryAuthError, match="requires a login"):
            client(tls, registry).image_config(image)
        config = client(tls, registry).image_config(image, [Credential(registry.host, "ann", "pw")])
        assert config == ImageConfig(entrypoint=(), cmd=("./run.sh",))
    finally:
        registry.shutdown()
        registry.server_close()


def test_missing_image_and_platform_are_reported(registry: FakeRegistry, tls: TLS) -> None:
    with pytest.raises(RegistryAuthError, match="HTTP 404"):
        client(tls, registry).image_config(f"{registry.host}/team/none:v1")
    registry.push_index("team/arm", "v1", {"linux/arm64": TRAIN})
    with pytest.raises(RegistryError, match=r"no linux/amd64 variant .*linux/arm64"):
        client(tls, registry).image_config(f"{registry.host}/team/arm:v1")


def test_tampered_config_blob_is_refused(registry: FakeRegistry, tls: TLS) -> None:
    registry.push("team/train", "bad", TRAIN)
    for blob_digest in registry.blobs:
        registry.blobs[blob_digest] = json.dumps({"config": {"Entrypoint": ["evil"]}}).encode()
    with pytest.raises(RegistryError, match="does not match its digest"):
        client(tls, registry).image_config(f"{registry.host}/team/train:bad")


def test_untrusted_certificate_is_refused(registry: FakeRegistry) -> None:
    registry.push("team/train", "v1", TRAIN)
    with pytest.raises(RegistryError, match=f"cannot reach registry {registry.host}.*CERTIFICATE_VERIFY_FAILED"):
        RegistryClient(allow_local=registry.local_hosts).image_config(f"{registry.host}/team/train:v1")


def test_slow_registry_is_bounded(registry: FakeRegistry, tls: TLS) -> None:
    registry.push("team/train", "v1", TRAIN)
    registry.delay = 1.0
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"did not answer within 0\.3 s"):
        client(tls, registry, timeout=0.3).image_config(f"{registry.host}/team/train:v1")
    assert time.monotonic() - started < 1.0


def test_unreachable_registry() -> None:
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:9"):
        RegistryClient(timeout=2, allow_local=["127.0.0.1:9"]).image_config("127.0.0.1:9/team/train:v1")
