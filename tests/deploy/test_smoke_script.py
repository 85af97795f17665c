"""The chart's helm-test script (files/smoke_test.py) run against the real `katib-metrics injector serve`."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.conftest import CHART

SCRIPT = CHART / "files" / "smoke_test.py"
KATIB_CONFIG = """\
apiVersion: config.kubeflow.org/v1beta1
kind: KatibConfig
runtime:
  metricsCollectors:
    - kind: StdOut
      image: localhost/katib-metrics-collector:dev
"""
# Never contacted: a pod no Trial owns needs no API read. Port 9 (discard) refuses connections at once.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path) -> dict[str, Path]:
    """A CA, a serving certificate for localhost signed by it, and an unrelated CA."""
    ca_key, other_key, key = _key(), _key(), _key()
    ca = _cert("test-ca", ca_key, None, [])
    other = _cert("other-ca", other_key, None, [])
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    serving = _cert("localhost", key, ("test-ca", ca_key), sans)
    paths = {name: directory / f"{name}.pem" for name in ("ca", "other", "cert", "key")}
    pem = serialization.Encoding.PEM
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["other"].write_bytes(other.public_bytes(pem))
    paths["cert"].write_bytes(serving.public_bytes(pem))
    paths["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def wait_for_listen_port(process: subprocess.Popen[str], deadline: float) -> int:
    assert process.stderr is not None
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            return int(match.group(1))
    raise AssertionError("the server did not report its listening port:\n" + "".join(seen))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def injector_port(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[int]:
    pytest.importorskip("katib_metrics.injector.serve_cli", reason="`injector serve` is not in this tree")
    directory = tmp_path_factory.mktemp("injector")
    (directory / "katib-config.yaml").write_text(KATIB_CONFIG, encoding="utf-8")
    (directory / "kubeconfig").write_text(KUBECONFIG, encoding="utf-8")
    argv = [
        sys.executable,
        "-m",
        "katib_metrics",
        "injector",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert-file",
        str(pki["cert"]),
        "--tls-key-file",
        str(pki["key"]),
        "--katib-config",
        str(directory / "katib-config.yaml"),
        "--kubeconfig",
        str(directory / "kubeconfig"),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield wait_for_listen_port(process, time.monotonic() + 20)
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_script(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "INJECTOR_URL": f"https://localhost:{port}", "TIMEOUT_SECONDS": "5", **env}
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
        check=False,
    )


def test_smoke_script_passes_against_the_real_injector(injector_port: int, pki: dict[str, Path]) -> None:
    result = run_script(injector_port, CA_FILE=str(pki["ca"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"verified against {pki['ca']}" in result.stdout
    assert "GET /readyz: HTTP 200" in result.stdout and "POST /mutate-pod: HTTP 200" in result.stdout


def test_smoke_script_verifies_the_certificate(injector_port: int, pki: dict[str, Path]) -> None:
    result = run_script(injector_port, CA_FILE=str(pki["other"]))
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_smoke_script_accepts_a_base64_ca_bundle(injector_port: int, pki: dict[str, Path]) -> None:
    result = run_script(injector_port, CA_PEM_BASE64=base64.b64encode(pki["ca"].read_bytes()).decode())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified against the configured caBundle" in result.stdout


def test_smoke_script_fails_when_nothing_listens(pki: dict[str, Path]) -> None:
    result = run_script(9, CA_FILE=str(pki["ca"]))
    assert result.returncode == 1
    assert "FAIL: cannot reach the injector" in result.stderr
