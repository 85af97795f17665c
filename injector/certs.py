"""Serving certificates: TLS contexts from cert/key files, reloaded when the files change (Secret rotation).

Also makes a self-signed CA and a serving certificate (the bootstrap mode, and tests).
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateReloader", "Issued", "issue_certificates", "server_context"]

log = logging.getLogger(__name__)


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context; ssl.SSLError/OSError when the files are missing or do not match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def _signature(paths: Sequence[str]) -> tuple[tuple[str, int, int, int], ...]:
    """What identifies the files' current content: the Secret-mount symlink swap changes the real path."""
    result = []
    for path in paths:
        real = os.path.realpath(path)
        stat = os.stat(real)
        result.append((real, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(result)


class CertificateReloader:
    """Hands out the current context; re-reads the files at most every `interval` seconds when asked."""

    def __init__(self, cert_file: str, key_file: str, *, interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_load: Callable[[bool], None] | None = None) -> None:
        self._files = (cert_file, key_file)
        self._interval = interval
        self._clock = clock
        self._on_load = on_load or (lambda ok: None)
        self._lock = threading.Lock()
        self._signature = _signature(self._files)
        self._context = server_context(cert_file, key_file)
        self._checked = clock()
        self.loads = 1
        self._on_load(True)

    def context(self) -> ssl.SSLContext:
        now = self._clock()
        if now - self._checked >= self._interval and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                self._maybe_reload()
            finally:
                self._lock.release()
        return self._context

    def _maybe_reload(self) -> None:
        try:
            signature = _signature(self._files)
            if signature == self._signature:
                return
            context = server_context(*self._files)
        except (OSError, ssl.SSLError) as err:
            # Mid-rotation (one file new, one old) or briefly missing: keep serving the old certificate.
            log.warning("serving certificate not reloaded, keeping the current one: %s", err)
            self._on_load(False)
            return
        self._signature, self._context = signature, context
        self.loads += 1
        self._on_load(True)
        log.info("serving certificate reloaded from %s", self._files[0])


@dataclass(frozen=True, slots=True)
class Issued:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue_certificates(dns_names: Sequence[str], *, ca_name: str = "katib-ca", organization: str = "katib",
                       days: int = 365, ip_addresses: Sequence[str] = (),
                       now: datetime.datetime | None = None) -> Issued:
    """A new CA and a serving certificate for `dns_names` signed by it (ECDSA P-256), valid from `now`."""
    import ipaddress

    now = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name(ca_name, organization)
    ca_cert = (x509.CertificateBuilder().subject_name(ca_subject).issuer_name(ca_subject)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(until)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (x509.CertificateBuilder().subject_name(_name(dns_names[0], organization))
            .issuer_name(ca_subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return Issued(
        ca_pem=ca_cert.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
