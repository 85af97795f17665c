"""A training container without `command`: the webhook wraps its image's entrypoint (read with pull secrets)."""

from __future__ import annotations

import base64
import json
import pathlib
import shlex
import ssl
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest

from katib_metrics.injector.certs import issue_certificates, server_context
from katib_metrics.injector.registry import RegistryClient
from katib_metrics.injector.server import client_context
from katib_metrics.injector.wrap import kubelet_expand
from tests.injector import factories as f
from tests.injector.apiserver import FakeApiServer
from tests.injector.registry_server import FakeRegistry
from tests.injector.test_server import Webhook, api, review  # noqa: F401  (the `api` fixture)

SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
          "metadata": {"name": "regcred", "namespace": "team-a"}}


@pytest.fixture
def registry(tmp_path: pathlib.Path) -> Iterator[tuple[FakeRegistry, ssl.SSLContext]]:
    issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
    for name, data in (("ca.crt", issued.ca_pem), ("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
        (tmp_path / f"registry-{name}").write_bytes(data)
    server = FakeRegistry(server_context(str(tmp_path / "registry-tls.crt"), str(tmp_path / "registry-tls.key")))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    yield server, client_context(str(tmp_path / "registry-ca.crt"))
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook(api: FakeApiServer, tmp_path: pathlib.Path,  # noqa: F811
         registry: tuple[FakeRegistry, ssl.SSLContext]) -> Iterator[Webhook]:
    webhook = Webhook(api, tmp_path, images=RegistryClient(ssl_context=registry[1], timeout=3,
                                                                 allow_local=registry[0].local_hosts))
    yield webhook
    webhook.close()


def commandless_pod(image: str, **spec: Any) -> dict[str, Any]:
    pod = f.pod()
    del pod["spec"]["containers"][0]["command"]
    pod["spec"]["containers"][0]["image"] = image
    pod["spec"].update(spec)
    return pod


def admit(hook: Webhook, pod: dict[str, Any]) -> dict[str, Any]:
    response = hook.post(review(pod))["response"]
    assert response["allowed"] is True, response
    mutated: dict[str, Any] = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    kubernetes_validate.validate(mutated, "1.33.0", strict=True)
    return mutated


def test_private_image_entrypoint_through_the_service_accounts_pull_secret(
        hook: Webhook, api: FakeApiServer, registry: tuple[FakeRegistry, ssl.SSLContext],  # noqa: F811
        tmp_path: pathlib.Path) -> None:
    server, _ = registry
    server.push("team/train", "v1", {"Entrypoint": ["sh", "-c", 'echo "$0 $1 \\$(EPOCHS)"'],
                                        "Cmd": ["a b", "c"]})
    server.private.add("team/train")
    server.users["robot"] = "token-123"
    dockerconfig = {"auths": {server.host: {"auth": base64.b64encode(b"robot:token-123").decode()}}}
    api.add({**SECRET, "data": {".dockerconfigjson": base64.b64encode(json.dumps(dockerconfig).encode()).decode()}},
            "secrets")
    api.add({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "trainer", "namespace": "team-a"},
             "imagePullSecrets": [{"name": "regcred"}]}, "serviceaccounts")
    mutated = admit(hook, commandless_pod(f"{server.host}/team/train:v1", serviceAccountName="trainer"))
    main = mutated["spec"]["containers"][0]
    assert main["command"] == ["sh", "-c"]
    # The wrapped argv is the image's, with `$(...)` escaped: the image config is not subject to kubelet expansion.
    assert main["args"][2:] == ["sh", "-c", 'echo "$$0 $$1 \\$$(EPOCHS)"', "a b", "c"]
    expanded = [kubelet_expand(a, {"EPOCHS": "3"}) for a in main["command"] + main["args"]]
    marker_dir = tmp_path / "katib"
    marker_dir.mkdir()
    script = expanded[2].replace("/var/log/katib", str(marker_dir))
    result = subprocess.run(["sh", "-c", script, *expanded[3:]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (marker_dir / "metrics.log").read_text() == "a b c $(EPOCHS)\n", shlex.join(expanded)


def test_unreadable_image_denies_with_a_message_to_set_command(
        hook: Webhook, registry: tuple[FakeRegistry, ssl.SSLContext]) -> None:
    server, _ = registry
    server.push("team/private", "v1", {"Entrypoint": ["python"]})
    server.private.add("team/private")
    response = hook.post(review(commandless_pod(f"{server.host}/team/private:v1")))["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    message = response["status"]["message"]
    assert f"image '{server.host}/team/private:v1'" in message and "HTTP 401" in message
    assert "set `command` (and `args`) for the training container" in message


def test_non_primary_pods_need_no_registry(hook: Webhook, api: FakeApiServer) -> None:  # noqa: F811
    trial = f.trial(primary_pod_labels=f.JOB_ROLE_MASTER)
    api.add(trial, "trials")
    worker = commandless_pod("localhost:9/never/read:v1")
    response = hook.post(review(worker))["response"]
    assert response["allowed"] is True and "patch" in response  # labels and env, no lookup, no denial
