"""Certificate bootstrap: a self-signed CA and serving certificate kept in a Secret, trusted by our webhook.

`ensure()` reads the MutatingWebhookConfiguration (whose `clientConfig.service` names the DNS names the API
server will check), reads the Secret and keeps its certificate when it is whole, covers those names and is
not near expiry; otherwise it issues a new one and stores it (create, or update at the read resourceVersion,
so that of several replicas starting together exactly one certificate wins and the others adopt it). Then it
makes every webhook's `caBundle` hold that CA (plus the previous one during a renewal, so replicas still
serving the old certificate stay trusted) and writes tls.crt, tls.key and ca.crt where the server loads them.
`CertificateKeeper` repeats this periodically, which renews before expiry and picks up a peer's renewal.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from katib_metrics.injector.certs import Issued, issue_certificates
from katib_metrics.injector.errors import ConfigError, ConflictError, LookupFailedError, NotFoundError
from katib_metrics.injector.settings import BootstrapSettings

__all__ = ["CertificateBootstrap", "CertificateKeeper", "ObjectApi", "service_dns_names", "unusable_reason",
           "write_files", "write_placeholder"]

log = logging.getLogger(__name__)
WEBHOOK_API = "admissionregistration.k8s.io/v1"
WEBHOOK_KIND = "MutatingWebhookConfiguration"
FILES = ("tls.crt", "tls.key", "ca.crt")


class ObjectApi(Protocol):
    """The API access bootstrap needs (`injector.resolve.KubeReader`); namespace "" for cluster-scoped."""

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def json_patch(self, api_version: str, kind: str, namespace: str, name: str,
                   patch: list[dict[str, Any]]) -> dict[str, Any]: ...


def service_dns_names(webhook_config: Mapping[str, Any]) -> list[str]:
    """`<svc>.<ns>.svc` and `<svc>.<ns>.svc.cluster.local` of every service the configuration calls."""
    services = []
    for webhook in webhook_config.get("webhooks") or []:
        service = ((webhook or {}).get("clientConfig") or {}).get("service") or {}
        if service.get("name") and service.get("namespace"):
            services.append((str(service["name"]), str(service["namespace"])))
    if not services:
        name = (webhook_config.get("metadata") or {}).get("name")
        raise ConfigError(f"{WEBHOOK_KIND} {name} calls no clientConfig.service, so the certificate's DNS names "
                          "are unknown: pass --cert-dns-name")
    names: list[str] = []
    for name, namespace in dict.fromkeys(services):
        names += [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
    return names


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    data = (secret or {}).get("data") or {}
    result = {}
    for key in FILES:
        try:
            result[key] = base64.b64decode(str(data.get(key) or ""), validate=True)
        except (binascii.Error, ValueError):
            result[key] = b""
    return result


def _check(files: Mapping[str, bytes], dns_names: Sequence[str], now: datetime.datetime,
           renew_before: datetime.timedelta) -> str | None:
    cert = x509.load_pem_x509_certificate(files["tls.crt"])
    ca = x509.load_pem_x509_certificate(files["ca.crt"])
    key = serialization.load_pem_private_key(files["tls.key"], password=None)
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
        return "tls.key does not belong to tls.crt"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "tls.crt is not signed by ca.crt"
    names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                .get_values_for_type(x509.DNSName))
    missing = [name for name in dns_names if name not in names]
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    if min(cert.not_valid_after_utc, ca.not_valid_after_utc) - now < renew_before:
        return f"the certificate expires at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ} (renewal is due)"
    if cert.not_valid_before_utc > now:
        return "the certificate is not valid yet"
    return None


def unusable_reason(secret: Mapping[str, Any] | None, dns_names: Sequence[str], now: datetime.datetime,
                    renew_before: datetime.timedelta) -> str | None:
    """Why the Secret's certificate must be replaced, or None when it can be served as it is."""
    if secret is None:
        return "the Secret does not exist"
    files = _decoded(secret)
    if not all(files.values()):
        return f"the Secret lacks {', '.join(k for k, v in files.items() if not v)}"
    try:
        return _check(files, dns_names, now, renew_before)
    except (ValueError, TypeError, x509.ExtensionNotFound) as err:
        return f"the Secret holds an unreadable certificate or key: {err}"


def _ca_still_valid(pem: bytes, now: datetime.datetime) -> bool:
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc > now
    except ValueError:
        return False


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.replace(temporary, path)  # atomic: the server never loads half a file


def write_files(directory: str, issued: Issued) -> bool:
    """Writes tls.crt, tls.key and ca.crt into `directory` (0700); True when something changed."""
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = False
    # The key first: the reloader retries a cert/key mismatch, and a new key never meets an old certificate's CA.
    for name, data, mode in (("tls.key", issued.key_pem, 0o600), ("tls.crt", issued.cert_pem, 0o644),
                             ("ca.crt", issued.ca_pem, 0o644)):
        path = folder / name
        if not path.exists() or path.read_bytes() != data:
            _write(path, data, mode)
            changed = True
    return changed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CertificateBootstrap:
    def __init__(self, api: ObjectApi, settings: BootstrapSettings,
                 clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
                 issue: Callable[..., Issued] = issue_certificates) -> None:
        self._api = api
        self._settings = settings
        self._clock = clock
        self._issue = issue
        self.issued_count = 0

    @property
    def files(self) -> tuple[str, str]:
        """(certificate, key) paths the server loads."""
        return (os.path.join(self._settings.cert_dir, "tls.crt"), os.path.join(self._settings.cert_dir, "tls.key"))

    def ensure(self) -> Issued:
        """The serving certificate, issued or adopted, trusted by the webhook and written to disk."""
        settings = self._settings
        webhook = self._api.get(WEBHOOK_API, WEBHOOK_KIND, "", settings.webhook_config)
        dns_names = list(settings.dns_names) or service_dns_names(webhook)
        issued, previous_ca = self._certificate(dns_names)
        self._trust(webhook, issued.ca_pem, previous_ca)
        if write_files(settings.cert_dir, issued):
            log.info("serving certificate for %s written to %s", ", ".join(dns_names), settings.cert_dir)
        return issued

    def _read_secret(self) -> dict[str, Any] | None:
        try:
            return self._api.get("v1", "Secret", self._settings.namespace, self._settings.secret)
        except NotFoundError:
            return None

    def _certificate(self, dns_names: list[str]) -> tuple[Issued, bytes]:
        """(certificate to serve, the CA it replaced or b"")."""
        settings = self._settings
        secret = self._read_secret()
        reason = unusable_reason(secret, dns_names, self._clock(), settings.renew_before)
        if reason is None:
            files = _decoded(secret)
            return Issued(ca_pem=files["ca.crt"], cert_pem=files["tls.crt"], key_pem=files["tls.key"]), b""
        log.info("issuing a new serving certificate in Secret %s/%s: %s", settings.namespace, settings.secret, reason)
        issued = self._issue(dns_names, ca_name="katib-metrics-injector-ca", organization="katib-metrics",
                             days=settings.validity_days, now=self._clock())
        try:
            self._store(secret, issued)
        except ConflictError:
            # Another replica stored its certificate between our read and our write: serve that one.
            secret = self._read_secret()
            reason = unusable_reason(secret, dns_names, self._clock(), settings.renew_before)
            if reason is not None:
                raise LookupFailedError(f"Secret {settings.namespace}/{settings.secret} changed while the "
                                        f"certificate was renewed and is still unusable: {reason}") from None
            files = _decoded(secret)
            return Issued(ca_pem=files["ca.crt"], cert_pem=files["tls.crt"], key_pem=files["tls.key"]), b""
        self.issued_count += 1
        old_ca = _decoded(secret)["ca.crt"]
        return issued, old_ca if old_ca and _ca_still_valid(old_ca, self._clock()) else b""

    def _store(self, secret: Mapping[str, Any] | None, issued: Issued) -> None:
        settings = self._settings
        data = {"tls.crt": _b64(issued.cert_pem), "tls.key": _b64(issued.key_pem), "ca.crt": _b64(issued.ca_pem)}
        if secret is not None:
            updated = copy.deepcopy(dict(secret))
            updated["data"] = data  # metadata.resourceVersion stays: a concurrent writer makes this a 409
            self._api.replace(updated)
            return
        try:
            self._api.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                              "metadata": {"name": settings.secret, "namespace": settings.namespace,
                                           "labels": {"app.kubernetes.io/managed-by": "katib-metrics-injector"}},
                              "data": data})
        except ConflictError:
            raise
        except LookupFailedError as err:
            raise LookupFailedError(f"Secret {settings.namespace}/{settings.secret} does not exist and cannot be "
                                    f"created ({err}); create it empty (the Helm chart does) or grant `create` on "
                                    "secrets") from err

    def _trust(self, webhook: Mapping[str, Any], ca_pem: bytes, previous_ca: bytes) -> None:
        """Patches every webhook whose caBundle lacks `ca_pem` (a JSON patch guarded by `test` on the names)."""
        patch: list[dict[str, Any]] = []
        for index, entry in enumerate(webhook.get("webhooks") or []):
            current = (entry.get("clientConfig") or {}).get("caBundle") or ""
            try:
                bundle = base64.b64decode(current)
            except (binascii.Error, ValueError):
                bundle = b""
            if ca_pem.strip() in bundle:
                continue
            wanted = ca_pem + (previous_ca if previous_ca and previous_ca.strip() in bundle else b"")
            patch += [{"op": "test", "path": f"/webhooks/{index}/name", "value": entry.get("name")},
                      {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": _b64(wanted)}]
        if patch:
            self._api.json_patch(WEBHOOK_API, WEBHOOK_KIND, "", self._settings.webhook_config, patch)
            log.info("caBundle of %s %s set to the serving certificate's CA", WEBHOOK_KIND,
                     self._settings.webhook_config)


class CertificateKeeper:
    """Runs `ensure()` at once, then every `interval` seconds; after failures sooner, with backoff up to `retry`."""

    def __init__(self, bootstrap: CertificateBootstrap, interval: float, retry: float = 30.0,
                 on_success: Callable[[], None] = lambda: None) -> None:
        self._bootstrap = bootstrap
        self._interval = interval
        self._retry = min(retry, interval)
        self._on_success = on_success
        self._stop = threading.Event()
        self.runs = 0
        self.failures = 0
        self.ran = threading.Condition()

    def _attempt(self, failed_in_a_row: int) -> int:
        try:
            self._bootstrap.ensure()
        except (LookupFailedError, ConfigError, OSError) as err:
            self.failures += 1
            log.warning("serving certificate not made or renewed (attempt %d): %s", failed_in_a_row + 1, err)
            return failed_in_a_row + 1
        self._on_success()
        return 0

    def run(self) -> None:
        wait, failed = 0.0, 0
        while not self._stop.wait(wait):
            failed = self._attempt(failed)
            wait = self._interval if failed == 0 else min(self._retry, 0.5 * 2 ** (failed - 1))
            with self.ran:
                self.runs += 1
                self.ran.notify_all()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="certificate-keeper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def write_placeholder(directory: str) -> None:
    """A throwaway self-signed certificate to listen with until the real one exists (kept when files exist)."""
    folder = Path(directory)
    if (folder / "tls.crt").exists() and (folder / "tls.key").exists():
        return  # a previous run's certificate (same pod, restarted container): checked by the first ensure()
    write_files(directory, issue_certificates(["katib-metrics-injector.invalid"], days=1))
