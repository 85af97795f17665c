"""Where registry lookups may go: never loopback, link-local, unspecified or cloud-metadata addresses; https only.

The webhook reads images named by any pod (and any forged AdmissionReview), so an image name, a token realm
or a `Location` header is attacker-chosen: without these rules a lookup is a blind SSRF into the webhook's own
pod, the node's metadata service or plain-HTTP endpoints. Rules:

- every host is resolved and *every* address checked; the connection is then made to a checked address (a
  second resolution could answer differently: DNS rebinding), keeping the name for TLS;
- hosts listed as local registries (`--allow-local-registry HOST[:PORT]`) are exempt: an operator's choice,
  matched on host and port exactly as written (a port-less entry matches every port of that host);
- plain `http` only to registries configured insecure; credentials never cross a change of scheme, host or
  port (`same_origin`).

Behind an environment proxy the proxy connects, not us: the target is then checked by resolving it here.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from katib_metrics.injector.errors import RegistryError

__all__ = ["AddressPolicy", "GuardedHTTPHandler", "GuardedHTTPSHandler", "NoRedirect", "check_target",
           "forbidden_reason", "origin", "same_origin"]

Resolver = Callable[[str, int], Sequence[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names of metadata services that may resolve to ordinary-looking addresses on some networks.
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.internal", "metadata.packet.net"})
# Metadata addresses outside the link-local ranges: Alibaba, AWS (IPv6), Azure's wire server.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in
                               ("100.100.100.200", "fd00:ec2::254", "168.63.129.16"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to the same host: mapped, NAT64, or the old compatible form."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why no lookup may connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_v4(address)) is not None:
        return forbidden_reason(inner)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "an unspecified address (it reaches the local host)"
    if address.is_multicast:
        return "a multicast address"
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise RegistryError(f"cannot resolve registry host {host}: {err.strerror or err}") from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in: what credentials are bound to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise RegistryError(f"invalid port in URL {url!r}") from None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def same_origin(first: str, second: str) -> bool:
    return origin(first) == origin(second)


def check_target(url: str, insecure: frozenset[str], proxies: Mapping[str, str], policy: AddressPolicy) -> None:
    """RegistryError unless `url` may be fetched: https, or http to a registry configured insecure (`insecure`
    holds lowercase HOST[:PORT] entries); behind a proxy, the target's addresses are checked here (without one,
    the connection checks what it connects to)."""
    scheme, host, port = origin(url)
    netloc = urlsplit(url).netloc.lower()
    if scheme == "http" and not ({netloc, host} & insecure):
        raise RegistryError(f"refusing plain-HTTP {url}: registries are read over https unless configured "
                            f"with --insecure-registry {netloc}")
    if scheme not in ("https", "http"):
        raise RegistryError(f"refusing {url}: registries are read over https")
    if scheme in proxies and not urllib.request.proxy_bypass(host):
        policy.addresses(host, port)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by the registry session, which checks each target and what credentials go along."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class AddressPolicy:
    """Checks hosts (by name and every resolved address) and opens connections only to checked addresses."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self.allowed = frozenset(entry.lower() for entry in allowed)
        self.resolve: Resolver = resolver or _system_resolver

    def exempt(self, host: str, port: int) -> bool:
        host = host.lower()
        bracketed = f"[{host}]" if ":" in host else host
        return bracketed in self.allowed or f"{bracketed}:{port}" in self.allowed

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host`, all checked; RegistryError naming the host and the rule otherwise."""
        name = host.lower().rstrip(".")
        if self.exempt(name, port):
            return list(self.resolve(name, port))
        if name in METADATA_NAMES:
            raise RegistryError(f"refusing to connect to {host}: a cloud metadata service")
        try:
            literal: IPAddress | None = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            literal = None
        found = [str(literal)] if literal is not None else list(self.resolve(name, port))
        for text in found:
            reason = forbidden_reason(ipaddress.ip_address(text))
            if reason is not None:
                shown = host if text == host else f"{host} ({text})"
                raise RegistryError(f"refusing to connect to {shown}: {reason}; image lookups never go there "
                                    "(list a registry that must with --allow-local-registry)")
        if not found:
            raise RegistryError(f"cannot resolve registry host {host}: no addresses")
        return found

    def connect(self, address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
                source_address: Any = None) -> socket.socket:
        """`socket.create_connection`, to the checked addresses of `address`'s host only."""
        host, port = address
        error: OSError | None = None
        for ip in self.addresses(host, port):
            try:
                return socket.create_connection((ip, port), timeout, source_address)
            except OSError as err:
                error = err
        raise error if error is not None else OSError(f"no address of {host} could be reached")


def _proxied(req: urllib.request.Request) -> bool:
    """Whether the request goes through an environment proxy (a CONNECT tunnel, or a plain-HTTP proxy): the
    socket then goes to the operator's proxy, and the target was checked by name in `RegistryClient`."""
    return bool(req.has_proxy() or getattr(req, "_tunnel_host", None))


def _factory(cls: type[http.client.HTTPConnection], policy: AddressPolicy) -> Callable[..., Any]:
    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        connection = cls(host, **kwargs)
        connection._create_connection = policy.connect  # type: ignore[attr-defined]
        return connection
    return make


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: Any, policy: AddressPolicy) -> None:
        super().__init__(context=context)
        self._policy = policy

    def https_open(self, req: urllib.request.Request) -> Any:
        cls = http.client.HTTPSConnection
        return self.do_open(cls if _proxied(req) else _factory(cls, self._policy), req,
                            context=self._context)  # type: ignore[attr-defined]


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__()
        self._policy = policy

    def http_open(self, req: urllib.request.Request) -> Any:
        cls = http.client.HTTPConnection
        return self.do_open(cls if _proxied(req) else _factory(cls, self._policy), req)
