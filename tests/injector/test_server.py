"""The webhook over real HTTPS with real certificates, resolving Trials from a local API server."""

from __future__ import annotations

import base64
import http.client
import json
import pathlib
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings

from katib_metrics.injector.certs import issue_certificates
from katib_metrics.injector.metrics import InjectorMetrics
from katib_metrics.injector.resolve import ApiResolver, ImageSource, KubeReader, kube_config
from katib_metrics.injector.serve_cli import build_servers
from katib_metrics.injector.server import WebhookServer, client_context, start_in_thread
from katib_metrics.injector.settings import ServeSettings
from katib_metrics.injector.sidecar import SidecarOptions
from tests.injector import factories as f
from tests.injector.apiserver import FakeApiServer
from tests.injector.fuzz import batches, check_answer

TRIAL_PATH = "/apis/kubeflow.org/v1beta1/namespaces/team-a/trials/exp-abc12"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def write_certs(directory: pathlib.Path) -> pathlib.Path:
    issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
    (directory / "ca.crt").write_bytes(issued.ca_pem)
    (directory / "tls.crt").write_bytes(issued.cert_pem)
    (directory / "tls.key").write_bytes(issued.key_pem)
    return directory / "ca.crt"


def trial_api() -> FakeApiServer:
    """A started API stand-in holding pod → Job → Trial, the Suggestion and katib-config."""
    server = FakeApiServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "exp-abc12", "namespace": "team-a",
                        "ownerReferences": [{"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
                                             "name": "exp-abc12", "uid": "u1", "controller": True}]}}
    server.add(job, "jobs")
    server.add(f.trial(rules=[{"name": "accuracy", "value": "0.5", "comparison": "less", "startStep": 2}]),
               "trials")
    suggestion = f.experiment("medianstop-random")
    suggestion["kind"] = "Suggestion"
    server.add(suggestion, "suggestions")
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "katib-config", "namespace": "kubeflow"},
                 "data": {"katib-config.yaml": f.ALL_KINDS_CONFIG}}
    server.add(configmap, "configmaps")
    return server


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = trial_api()
    yield server
    server.shutdown()
    server.server_close()


class Webhook:
    def __init__(self, api: FakeApiServer, tmp: pathlib.Path, api_timeout: float = 2.0,
                 images: ImageSource | None = None) -> None:
        self.ca = write_certs(tmp)
        self.tmp = tmp
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "local", "cluster": {"server": api.url}}],
            "users": [{"name": "injector", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "local", "user": "injector"}}]}))
        reader = KubeReader.connect(kube_config(str(kubeconfig), {}), api_timeout)
        self.resolver = ApiResolver(reader, katib_namespace="kubeflow", ttl=30.0, images=images)
        self.metrics = InjectorMetrics()
        settings = ServeSettings(listen=("127.0.0.1", 0), tls_cert_file=str(tmp / "tls.crt"),
                                 tls_key_file=str(tmp / "tls.key"), metrics_listen=("127.0.0.1", 0),
                                 cert_check_interval=0.1)
        self.servers: list[WebhookServer] = build_servers(settings, self.resolver, SidecarOptions(), self.metrics)
        for server in self.servers:
            start_in_thread(server)

    def connection(self, ca: pathlib.Path | None = None) -> http.client.HTTPSConnection:
        context = client_context(str(ca or self.ca))
        return http.client.HTTPSConnection("localhost", self.servers[0].port, context=context, timeout=10)

    def post(self, body: bytes, conn: http.client.HTTPSConnection | None = None) -> dict[str, Any]:
        conn = conn or self.connection()
        conn.request("POST", "/mutate-pod", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        result: dict[str, Any] = json.loads(response.read())
        return result

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def webhook(api: FakeApiServer, tmp_path: pathlib.Path) -> Iterator[Webhook]:
    hook = Webhook(api, tmp_path)
    yield hook
    hook.close()


def review(pod: dict[str, Any], uid: str = "0f5c1a3e-1") -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "operation": "CREATE", "namespace": "team-a", "object": pod}}).encode()


def test_trial_pod_is_mutated_with_a_patch_that_reproduces_the_pod(webhook: Webhook) -> None:
    pod = f.pod()
    answer = webhook.post(review(pod))
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert response["uid"] == "0f5c1a3e-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    mutated = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    kubernetes_validate.validate(mutated, "1.33.0", strict=True)
    sidecar = mutated["spec"]["containers"][-1]
    assert sidecar["args"][-4:] == ["-stop-rule", "accuracy;0.5;less;2", "-s-earlystop",
                                    "exp-medianstop-random.team-a:6788"]


def test_pod_without_trial_owner_is_allowed_unchanged(webhook: Webhook, api: FakeApiServer) -> None:
    pod = f.pod(owner_kind="ReplicaSet", owner_api="apps/v1", owner_name="web-7d4b9")
    response = webhook.post(review(pod))["response"]
    assert response == {"uid": "0f5c1a3e-1", "allowed": True}
    assert api.hits["/apis/apps/v1/namespaces/team-a/replicasets/web-7d4b9"] == 1


@pytest.mark.parametrize(("api_version", "kind", "name"), [
    ("batch/v1", "Job", "a/b"), ("batch/v1", "Job", "line\nbreak"), ("batch/v1", "Job", ".."),
    ("batch/v1", "Jobs/x", "exp-abc12"), ("", "Job", "exp-abc12"), ("batch/%2F", "Job", "exp-abc12")])
def test_owner_that_cannot_name_an_object_is_not_looked_up(webhook: Webhook, api: FakeApiServer, api_version: str,
                                                             kind: str, name: str) -> None:
    pod = f.pod(owner_api=api_version, owner_kind=kind, owner_name=name)
    response = webhook.post(review(pod))["response"]
    assert response == {"uid": "0f5c1a3e-1", "allowed": True}
    assert not api.hits


def test_trial_read_failure_denies_naming_the_trial(webhook: Webhook, api: FakeApiServer) -> None:
    api.failures[TRIAL_PATH] = 500
    response = webhook.post(review(f.pod()))["response"]
    assert response["allowed"] is False
    assert "Trial team-a/exp-abc12" in response["status"]["message"]
    assert response["status"]["code"] == 500


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"apiVersion": "admission.k8s.io/v1"}',
                                  b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}'])
def test_malformed_reviews_get_a_well_formed_denial(webhook: Webhook, body: bytes) -> None:
    answer = webhook.post(body)
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 400


def test_three_hundred_random_and_malformed_reviews_over_https(webhook: Webhook) -> None:
    conn = webhook.connection()
    answered = 0

    @settings(max_examples=15, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batches(20))
    def run(bodies: list[bytes]) -> None:
        nonlocal answered
        for body in bodies:
            check_answer(body, webhook.post(body, conn))
            answered += 1

    run()
    assert answered >= 300
    counted = sum(webhook.metrics.registry.get_sample_value("katib_injector_admissions_total", {"outcome": outcome})
                  or 0 for outcome in ("mutated", "unchanged", "denied", "invalid"))
    assert counted == answered


def test_burst_of_pods_costs_one_lookup_per_object(webhook: Webhook, api: FakeApiServer) -> None:
    conn = webhook.connection()
    for index in range(20):
        assert webhook.post(review(f.pod(), uid=f"u{index}"), conn)["response"]["allowed"] is True
    assert api.hits[TRIAL_PATH] == 1
    assert api.hits["/apis/batch/v1/namespaces/team-a/jobs/exp-abc12"] == 1  # pod → Job → Trial
    assert api.hits["/api/v1/namespaces/kubeflow/configmaps/katib-config"] == 1


def test_slow_api_server_is_bounded(api: FakeApiServer, tmp_path: pathlib.Path) -> None:
    hook = Webhook(api, tmp_path, api_timeout=0.3)
    try:
        api.delay = 1.0
        started = time.monotonic()
        response = hook.post(review(f.pod()))["response"]
        assert time.monotonic() - started < 2.0
        assert response["allowed"] is False
        assert "Job team-a/exp-abc12" in response["status"]["message"]
    finally:
        api.delay = 0.0
        hook.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def test_health_readiness_and_metrics(webhook: Webhook) -> None:
    webhook.post(review(f.pod()))
    webhook.post(b"garbage")
    port = webhook.servers[1].port
    assert _get(port, "/healthz") == (200, b"ok\n")
    assert _get(port, "/readyz") == (200, b"ok\n")
    status, body = _get(port, "/metrics")
    text = body.decode()
    assert status == 200
    assert 'katib_injector_admissions_total{outcome="mutated"} 1.0' in text
    assert 'katib_injector_admissions_total{outcome="invalid"} 1.0' in text
    assert "katib_injector_admission_duration_seconds_count 2.0" in text
    assert _get(port, "/mutate-pod")[0] == 404
    conn = webhook.connection()
    conn.request("GET", "/metrics")
    assert b"katib_injector_admissions_total" in conn.getresponse().read()
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_rotated_certificate_is_served_without_restart(webhook: Webhook, tmp_path: pathlib.Path) -> None:
    old_ca = tmp_path / "old-ca.crt"
    old_ca.write_bytes(webhook.ca.read_bytes())
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_ca = write_certs(new_dir)
    # Atomic replace, as a Secret volume's symlink swap is.
    for name in ("tls.key", "tls.crt"):
        (new_dir / name).replace(tmp_path / name)

    def served_by_new_ca() -> bool:
        conn = webhook.connection(new_ca)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except ssl.SSLError:
            return False
        finally:
            conn.close()

    wait_for(served_by_new_ca)
    with pytest.raises(ssl.SSLError):
        conn = webhook.connection(old_ca)
        conn.request("GET", "/healthz")


def test_tls_below_1_2_is_refused(webhook: Webhook) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(webhook.ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    conn = http.client.HTTPSConnection("localhost", webhook.servers[0].port, context=context, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn.request("GET", "/healthz")
