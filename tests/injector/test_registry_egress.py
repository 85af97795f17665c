"""Registry lookups against real local registries: where redirects may lead, and what credentials follow them.

Every server here is on loopback, which lookups refuse by default; each client allows exactly the registry
under test (`allow_local`), so a redirect to any *other* loopback target is refused as it would be in a pod.
"""

from __future__ import annotations

import ipaddress
import pathlib
import socket
import threading
from collections.abc import Iterator

import pytest

from katib_metrics.injector.certs import issue_certificates, server_context
from katib_metrics.injector.egress import AddressPolicy, forbidden_reason, same_origin
from katib_metrics.injector.errors import RegistryError
from katib_metrics.injector.registry import MAX_REDIRECTS, RegistryClient
from katib_metrics.injector.server import client_context
from tests.injector.registry_server import FakeRegistry

TRAIN = {"Entrypoint": ["python"], "Cmd": ["train.py"]}
MANIFEST = "/v2/team/train/manifests/v1"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    directory: pathlib.Path = tmp_path_factory.mktemp("tls")
    issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
    for name, data in (("ca.crt", issued.ca_pem), ("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
        (directory / name).write_bytes(data)
    return str(directory / "tls.crt"), str(directory / "tls.key"), str(directory / "ca.crt")


@pytest.fixture
def servers(tls: tuple[str, str, str]) -> Iterator[list[FakeRegistry]]:
    """Two registries on loopback, each with the image: `first` under test, `second` somewhere else."""
    started = []
    for _ in range(2):
        server = FakeRegistry(server_context(tls[0], tls[1]), auth="bearer")
        server.push("team/train", "v1", TRAIN)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def client(tls: tuple[str, str, str], *allowed: str, insecure: tuple[str, ...] = (),
           resolver: AddressPolicy | None = None) -> RegistryClient:
    return RegistryClient(ssl_context=client_context(tls[2]), timeout=10, allow_local=allowed,
                          insecure_registries=insecure, resolver=resolver.resolve if resolver else None)


def test_the_registry_under_test_is_read_when_allowed(servers: list[FakeRegistry], tls: tuple[str, str, str]) -> None:
    first = servers[0]
    config = client(tls, *first.local_hosts).image_config(f"{first.host}/team/train:v1")
    assert config.entrypoint == ("python",)


@pytest.mark.parametrize("image", ["localhost:{port}/team/train:v1", "127.0.0.1:{port}/team/train:v1",
                                   "[::1]:{port}/team/train:v1", "169.254.169.254/latest:v1",
                                   "metadata.google.internal/computemetadata:v1", "0.0.0.0:{port}/team/train:v1"])
def test_a_registry_on_a_forbidden_address_is_refused_by_default(servers: list[FakeRegistry],
                                                                 tls: tuple[str, str, str], image: str) -> None:
    with pytest.raises(RegistryError, match=r"refusing to connect to .*(loopback|link-local|metadata|unspecified)"):
        client(tls).image_config(image.format(port=servers[0].port))
    assert not servers[0].hits


@pytest.mark.parametrize("target", [
    "https://127.0.0.1:{other}" + MANIFEST,  # another port on the same loopback address
    "https://localhost:{other}" + MANIFEST,  # the allowed name, another port
    "https://[::1]:{port}" + MANIFEST,
    "https://[::ffff:127.0.0.1]:{port}" + MANIFEST,
    "https://0.0.0.0:{port}" + MANIFEST,
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://[fe80::1]/",
    "https://100.100.100.200/latest/meta-data/",
    "https://metadata.google.internal/computeMetadata/v1/",
])
def test_redirects_to_other_local_or_metadata_targets_are_refused(servers: list[FakeRegistry],
                                                                  tls: tuple[str, str, str], target: str) -> None:
    first, second = servers
    first.redirects[MANIFEST] = target.format(other=second.port, port=first.port)
    with pytest.raises(RegistryError, match="refusing to connect to"):
        client(tls, *first.local_hosts).image_config(f"{first.host}/team/train:v1")
    assert not second.hits  # nothing reached the other server
    assert first.hits[MANIFEST] == 1


def test_a_name_is_refused_when_any_of_its_addresses_is_forbidden(servers: list[FakeRegistry],
                                                                  tls: tuple[str, str, str]) -> None:
    first = servers[0]
    asked: list[str] = []
    system = AddressPolicy()

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        fake = {"mirror.example": ["10.0.0.7", "127.0.0.1"], "mirror6.example": ["2001:db8::1", "fe80::5"]}
        return fake.get(host) or list(system.resolve(host, port))

    policy = AddressPolicy(resolver=resolve)
    for name, address in (("mirror.example", "127.0.0.1"), ("mirror6.example", "fe80::5")):
        first.redirects[MANIFEST] = f"https://{name}:{first.port}{MANIFEST}"
        with pytest.raises(RegistryError, match=rf"refusing to connect to {name} \({address}\)"):
            client(tls, *first.local_hosts, resolver=policy).image_config(f"{first.host}/team/train:v1")
    first.redirects[MANIFEST] = "https://metadata.google.internal/computeMetadata/v1/"
    with pytest.raises(RegistryError, match="cloud metadata service"):
        client(tls, *first.local_hosts, resolver=policy).image_config(f"{first.host}/team/train:v1")
    assert "metadata.google.internal" not in asked  # refused by its name, before any lookup


def test_a_redirect_to_plain_http_is_refused_unless_that_registry_is_insecure(
        servers: list[FakeRegistry], tls: tuple[str, str, str]) -> None:
    first, second = servers
    second.plain_too = True
    first.redirects[MANIFEST] = f"http://localhost:{second.port}{MANIFEST}"
    allowed = (*first.local_hosts, *second.local_hosts)
    with pytest.raises(RegistryError, match=rf"refusing plain-HTTP http://localhost:{second.port}/v2.*"
                                            rf"--insecure-registry localhost:{second.port}"):
        client(tls, *allowed).image_config(f"{first.host}/team/train:v1")
    assert not second.hits
    # The same redirect to a registry configured insecure is followed, without the first registry's token.
    second.auth = "none"
    config = client(tls, *allowed, insecure=(f"localhost:{second.port}",)).image_config(f"{first.host}/team/train:v1")
    assert config.entrypoint == ("python",)
    assert first.authorizations[-2].startswith("Bearer ")  # the token went to the first registry...
    assert second.authorizations == [""]  # ...and not over plain HTTP to the second


def test_credentials_do_not_follow_a_change_of_scheme_on_the_same_host_and_port(
        servers: list[FakeRegistry], tls: tuple[str, str, str]) -> None:
    first = servers[0]
    first.plain_too = True  # http and https on one port: only the scheme changes
    first.storage_base = f"https://localhost:{first.port}"  # an insecure registry hands blobs to https
    config = client(tls, *first.local_hosts, insecure=(first.host,)).image_config(f"{first.host}/team/train:v1")
    assert config.entrypoint == ("python",)
    assert first.storage_saw_authorization == 0  # the token stayed with the http origin
    assert any(value.startswith("Bearer ") for value in first.authorizations)
    # The other way round (https to http on the same host and port) is refused: the registry is not insecure.
    first.storage_base = f"http://localhost:{first.port}"
    with pytest.raises(RegistryError, match="refusing plain-HTTP"):
        client(tls, *first.local_hosts).image_config(f"{first.host}/team/train:v1")
    assert first.storage_saw_authorization == 0


def test_redirect_loops_are_bounded(servers: list[FakeRegistry], tls: tuple[str, str, str]) -> None:
    first = servers[0]
    first.redirects[MANIFEST] = MANIFEST  # a relative Location, to itself
    with pytest.raises(RegistryError, match=f"redirected more than {MAX_REDIRECTS} times"):
        client(tls, *first.local_hosts).image_config(f"{first.host}/team/train:v1")
    assert first.hits[MANIFEST] == MAX_REDIRECTS + 1


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("0.0.0.0", True), ("0.1.2.3", True), ("::", True),
    ("169.254.169.254", True), ("fe80::1", True), ("::ffff:169.254.169.254", True), ("64:ff9b::a9fe:a9fe", True),
    ("::127.0.0.1", True), ("100.100.100.200", True), ("fd00:ec2::254", True), ("224.0.0.1", True),
    ("10.96.0.10", False), ("192.168.1.5", False), ("172.17.0.2", False), ("8.8.8.8", False),
    ("2001:db8::1", False), ("fd12:3456::1", False),
])
def test_forbidden_addresses(address: str, refused: bool) -> None:
    assert (forbidden_reason(ipaddress.ip_address(address)) is not None) is refused


def test_origins() -> None:
    assert same_origin("https://r.io/v2/", "https://R.io:443/x")
    assert not same_origin("https://r.io/v2/", "http://r.io:443/v2/")
    assert not same_origin("https://r.io/v2/", "https://r.io:5000/v2/")
    assert not same_origin("https://r.io/v2/", "https://cdn.r.io/v2/")


def test_the_connection_goes_to_the_checked_address() -> None:
    """The socket is opened to an address the policy checked, never by a second resolution of the name."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answers = iter([["127.0.0.1"], ["10.255.255.1"]])  # a rebinding resolver: a second lookup would differ
    policy = AddressPolicy(allowed=["rebind.test"], resolver=lambda host, _: next(answers))
    with listener, policy.connect(("rebind.test", port), 5) as sock:
        assert sock.getpeername()[:2] == ("127.0.0.1", port)
