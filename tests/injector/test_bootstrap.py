"""Certificate bootstrap against the local API server: Secret filled or adopted, renewed, caBundle patched, served."""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import json
import os
import pathlib
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509

from katib_metrics.injector.bootstrap import CertificateBootstrap, CertificateKeeper, unusable_reason
from katib_metrics.injector.certs import Issued, issue_certificates
from katib_metrics.injector.errors import ConfigError, LookupFailedError
from katib_metrics.injector.resolve import KubeReader, kube_config
from katib_metrics.injector.settings import BootstrapSettings
from tests.injector.apiserver import FakeApiServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMESPACE = "katib-metrics"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets/kmi-tls"
WEBHOOK_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kmi-katib-metrics"
DNS = ["kmi.katib-metrics.svc", "kmi.katib-metrics.svc.cluster.local"]
NOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)


def webhook_config(service: bool = True) -> dict[str, Any]:
    client: dict[str, Any] = {"service": {"name": "kmi", "namespace": NAMESPACE, "path": "/mutate-pod"}} if service \
        else {"url": "https://example.com/mutate-pod"}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "kmi-katib-metrics"},
            "webhooks": [{"name": "pods.injector.katib-metrics.kubeflow.org", "clientConfig": client,
                          "admissionReviewVersions": ["v1"], "sideEffects": "None"}]}


def empty_secret() -> dict[str, Any]:
    """What the chart creates: an Opaque Secret without data."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "kmi-tls", "namespace": NAMESPACE}}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    server.add(webhook_config(), "mutatingwebhookconfigurations")
    server.add(empty_secret(), "secrets")
    yield server
    server.shutdown()
    server.server_close()


def write_kubeconfig(api: FakeApiServer, path: pathlib.Path) -> pathlib.Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "local", "cluster": {"server": api.url}}],
        "users": [{"name": "injector", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "local", "user": "injector", "namespace": "elsewhere"}}]}))
    return path


def make(api: FakeApiServer, tmp: pathlib.Path, *, name: str = "a",
         clock: Callable[[], datetime.datetime] = lambda: NOW,
         issue: Callable[..., Issued] = issue_certificates) -> CertificateBootstrap:
    reader = KubeReader.connect(kube_config(str(write_kubeconfig(api, tmp / "kubeconfig")), {}), 2.0)
    settings = BootstrapSettings(namespace=NAMESPACE, secret="kmi-tls", webhook_config="kmi-katib-metrics",
                                 cert_dir=str(tmp / f"certs-{name}"))
    return CertificateBootstrap(reader, settings, clock=clock, issue=issue)


def secret_files(api: FakeApiServer) -> dict[str, bytes]:
    data = api.objects[SECRET_PATH]["data"]
    return {key: base64.b64decode(value) for key, value in data.items()}


def ca_bundle(api: FakeApiServer) -> bytes:
    return base64.b64decode(api.objects[WEBHOOK_PATH]["webhooks"][0]["clientConfig"]["caBundle"])


def test_first_start_fills_the_charts_secret_and_patches_the_ca_bundle(api: FakeApiServer,
                                                                       tmp_path: pathlib.Path) -> None:
    bootstrap = make(api, tmp_path)
    issued = bootstrap.ensure()
    files = secret_files(api)
    assert files == {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem, "ca.crt": issued.ca_pem}
    assert api.objects[SECRET_PATH]["type"] == "Opaque"  # updated in place, not re-created
    assert ca_bundle(api) == issued.ca_pem
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == DNS
    written = pathlib.Path(bootstrap.files[0]).parent
    assert (written / "tls.crt").read_bytes() == issued.cert_pem
    assert (written / "tls.key").stat().st_mode & 0o777 == 0o600
    assert unusable_reason(api.objects[SECRET_PATH], DNS, NOW, datetime.timedelta(days=30)) is None
    assert ("PUT", SECRET_PATH) in api.writes and ("PATCH", WEBHOOK_PATH) in api.writes


def test_a_second_replica_adopts_the_certificate_without_writing(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    first = make(api, tmp_path).ensure()
    writes = len(api.writes)
    second = make(api, tmp_path, name="b")
    assert second.ensure() == first
    assert second.issued_count == 0 and len(api.writes) == writes


def test_missing_secret_is_created(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    del api.objects[SECRET_PATH]
    issued = make(api, tmp_path).ensure()
    assert api.objects[SECRET_PATH]["type"] == "kubernetes.io/tls"
    assert secret_files(api)["tls.crt"] == issued.cert_pem


def test_missing_secret_without_create_permission_says_what_to_do(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    del api.objects[SECRET_PATH]
    api.write_failures[("POST", SECRET_PATH)] = 403
    with pytest.raises(LookupFailedError, match=r"does not exist and cannot be created .*HTTP 403.*create it empty"):
        make(api, tmp_path).ensure()


def test_renewal_before_expiry_keeps_the_old_ca_trusted(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    old = make(api, tmp_path).ensure()
    later = NOW + datetime.timedelta(days=340)  # within 30 days of expiry of a 365-day certificate
    renewer = make(api, tmp_path, name="b", clock=lambda: later)
    new = renewer.ensure()
    assert new.cert_pem != old.cert_pem and renewer.issued_count == 1
    assert ca_bundle(api) == new.ca_pem + old.ca_pem
    assert secret_files(api)["ca.crt"] == new.ca_pem


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda f: {**f, "tls.crt": b""}, "lacks tls.crt"),
    (lambda f: {**f, "tls.key": issue_certificates(DNS).key_pem}, "does not belong"),
    (lambda f: {**f, "ca.crt": issue_certificates(DNS).ca_pem}, "not signed by ca.crt"),
    (lambda f: {**f, "tls.crt": b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"}, "unreadable"),
])
def test_a_damaged_secret_is_replaced(api: FakeApiServer, tmp_path: pathlib.Path,
                                      damage: Callable[[dict[str, bytes]], dict[str, bytes]], reason: str) -> None:
    make(api, tmp_path).ensure()
    files = damage(secret_files(api))
    api.objects[SECRET_PATH]["data"] = {k: base64.b64encode(v).decode() for k, v in files.items()}
    assert reason in (unusable_reason(api.objects[SECRET_PATH], DNS, NOW, datetime.timedelta(days=30)) or "")
    again = make(api, tmp_path, name="b")
    issued = again.ensure()
    assert again.issued_count == 1 and secret_files(api)["tls.crt"] == issued.cert_pem


def test_certificate_for_other_names_is_replaced(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    make(api, tmp_path).ensure()
    api.objects[WEBHOOK_PATH]["webhooks"][0]["clientConfig"]["service"]["name"] = "renamed"
    issued = make(api, tmp_path, name="b").ensure()
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert "renamed.katib-metrics.svc" in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_two_replicas_racing_end_with_one_certificate(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    winner = make(api, tmp_path, name="b")

    def issue_after_the_peer_stored(*args: Any, **kwargs: Any) -> Issued:
        winner.ensure()  # the peer reads, issues and stores between our read and our write
        return issue_certificates(*args, **kwargs)

    loser = make(api, tmp_path, issue=issue_after_the_peer_stored)
    adopted = loser.ensure()
    assert loser.issued_count == 0 and winner.issued_count == 1
    assert adopted.cert_pem == secret_files(api)["tls.crt"]
    assert ca_bundle(api) == adopted.ca_pem
    assert pathlib.Path(loser.files[0]).read_bytes() == pathlib.Path(winner.files[0]).read_bytes()


def test_webhook_without_service_needs_dns_names(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    api.add(webhook_config(service=False), "mutatingwebhookconfigurations")
    with pytest.raises(ConfigError, match="pass --cert-dns-name"):
        make(api, tmp_path).ensure()


def test_keeper_picks_up_a_peers_renewal(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    today = [NOW]
    mine = make(api, tmp_path, clock=lambda: today[0])
    mine.ensure()
    keeper = CertificateKeeper(mine, interval=0.05)
    keeper.start()
    try:
        today[0] = NOW + datetime.timedelta(days=340)
        renewed = make(api, tmp_path, name="b", clock=lambda: today[0]).ensure()
        deadline = time.monotonic() + 10
        with keeper.ran:
            while pathlib.Path(mine.files[0]).read_bytes() != renewed.cert_pem:
                assert keeper.ran.wait(max(0.0, deadline - time.monotonic())), "keeper did not run in time"
        assert keeper.failures == 0
    finally:
        keeper.stop()


def listening_ports(process: subprocess.Popen[str], count: int, deadline: float) -> list[int]:
    """The ports of the first `count` "listening on" log lines; the log keeps being read (and dropped) after."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stderr or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    ports: list[int] = []
    while len(ports) < count:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if match:
            ports.append(int(match.group(1)))
    assert len(ports) == count, "injector serve did not report its ports:\n" + "".join(seen)
    return ports


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@contextlib.contextmanager
def serving(api: FakeApiServer, tmp_path: pathlib.Path) -> Iterator[tuple[int, int]]:
    """`injector serve` in bootstrap mode as the chart runs it: (TLS port, plain metrics port)."""
    kubeconfig = write_kubeconfig(api, tmp_path / "kubeconfig")
    config = tmp_path / "katib-config.yaml"
    config.write_text("runtime:\n  metricsCollectors:\n    - kind: StdOut\n      image: collector:1\n")
    argv = [sys.executable, "-m", "katib_metrics.injector.cli", "serve", "--listen", "127.0.0.1:0", "--metrics-listen",
            "127.0.0.1:0", "--kubeconfig", str(kubeconfig), "--katib-config", str(config),
            "--cert-bootstrap-secret", "kmi-tls", "--webhook-config", "kmi-katib-metrics",
            "--cert-dir", str(tmp_path / "certs"),
            "--tls-cert-file", "/nonexistent/tls.crt", "--tls-key-file", "/nonexistent/tls.key"]
    env = {**os.environ, "POD_NAMESPACE": NAMESPACE}
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        tls_port, metrics_port = listening_ports(process, 2, time.monotonic() + 30)
        yield tls_port, metrics_port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


@pytest.fixture
def serve(api: FakeApiServer, tmp_path: pathlib.Path) -> Iterator[tuple[int, int]]:
    with serving(api, tmp_path) as ports:
        yield ports


def readyz(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/readyz")
    return conn.getresponse().status


def trusted_by_the_ca_bundle(api: FakeApiServer, port: int) -> bool:
    """Connects as the API server does: trusting the caBundle it was given, checking the service's DNS name."""
    bundle = api.objects[WEBHOOK_PATH]["webhooks"][0]["clientConfig"].get("caBundle")
    if not bundle:
        return False
    context = ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
    try:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                 server_hostname=DNS[0]):
            return True
    except ssl.SSLCertVerificationError:
        return False  # still the placeholder: the reloader swaps certificates within seconds


def test_serve_bootstraps_and_the_api_server_would_trust_it(api: FakeApiServer, serve: tuple[int, int]) -> None:
    tls_port, metrics_port = serve
    wait_for(lambda: trusted_by_the_ca_bundle(api, tls_port))
    wait_for(lambda: readyz(metrics_port) == 200)


def test_serve_listens_unready_until_the_bootstrap_can_finish(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    api.write_failures[("PATCH", WEBHOOK_PATH)] = 403
    with serving(api, tmp_path) as (tls_port, metrics_port):
        wait_for(lambda: sum(1 for method, _ in api.writes if method == "PATCH") >= 2)  # retried
        assert readyz(metrics_port) == 503
        del api.write_failures[("PATCH", WEBHOOK_PATH)]
        wait_for(lambda: readyz(metrics_port) == 200)
        wait_for(lambda: trusted_by_the_ca_bundle(api, tls_port))


def test_serve_without_certificate_options_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "katib_metrics.injector.cli", "serve",
                             "--cert-bootstrap-secret", "x"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "needs --webhook-config" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "katib_metrics.injector.cli", "serve"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "pass --tls-cert-file and --tls-key-file" in result.stderr
