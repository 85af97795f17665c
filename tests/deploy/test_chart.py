"""The Helm chart, rendered by a real helm, checked by kubernetes-validate and by field-level assertions."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import CHART, NAMESPACE, Helm, Manifest, write_values

OLDEST = "1.29.0"
NEWEST = kubernetes_validate.latest_version()
# Custom resources: kubernetes-validate has no schema for them; their key fields are asserted below instead.
CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")
OUR_LABEL = "katib-metrics.kubeflow.org/injection"
KATIB_LABEL = "katib.kubeflow.org/metrics-collector-injection"
CA_PEM_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "bootstrap": {"certificates": {"mode": "bootstrap"}},
    "cert-manager": {"certificates": {"mode": "certManager"}},
    "cert-manager-issuer": {
        "certificates": {
            "mode": "certManager",
            "certManager": {
                "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
            },
        },
    },
    "secret": {
        "certificates": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": CA_PEM_B64}}
    },
    "katib-takeover": {
        "katibConfig": {"source": "katib"},
        "webhook": {
            "namespaceLabel": {"key": KATIB_LABEL, "value": "enabled"},
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "objectSelector": {
                "matchExpressions": [{"key": "katib.kubeflow.org/trial", "operator": "DoesNotExist"}]
            },
        },
        "serviceMonitor": {"enabled": True},
        "sidecar": {"native": True, "metricsPort": 9464, "restrictedSecurityContext": False},
        "sidecarPodMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "image": {"digest": "sha256:" + "a" * 64},
    },
    "network-policy-open": {"networkPolicy": {"enabled": True}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "egress": {"extraRules": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
                                       "ports": [{"port": 5000, "protocol": "TCP"}]}]},
        },
    },
}


@pytest.fixture(scope="module")
def rendered(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    directory = tmp_path_factory.mktemp("values")
    return {name: helm.render(write_values(directory, name, values)) for name, values in SCENARIOS.items()}


def is_hook(obj: Manifest) -> bool:
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def by_kind(objects: list[Manifest], kind: str, hooks: bool = False) -> list[Manifest]:
    """Objects of one kind; helm test hooks only when asked for."""
    return [obj for obj in objects if obj["kind"] == kind and is_hook(obj) == hooks]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def injector_container(objects: list[Manifest]) -> Manifest:
    containers: list[Manifest] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "injector")


def arg_value(container: Manifest, flag: str) -> str | None:
    prefix = f"--{flag}="
    return next((a[len(prefix) :] for a in container["args"] if a.startswith(prefix)), None)


def webhook(objects: list[Manifest]) -> Manifest:
    hooks: list[Manifest] = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert len(hooks) == 1
    return hooks[0]


_VALIDATED: set[tuple[str, str]] = set()


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Iterator[None]:
    """kubernetes-validate re-reads and re-parses its multi-megabyte schema files on every call (60 ms);
    memoising the reader makes a call about 10 ms. Only the speed changes: the same schemas are used."""
    cached = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


def validate_once(obj: Manifest, version: str) -> None:
    """kubernetes-validate strict; an object repeated across scenarios is validated once (60 ms a call)."""
    key = (json.dumps(obj, sort_keys=True), version)
    if key not in _VALIDATED:
        kubernetes_validate.validate(obj, version, strict=True)
        _VALIDATED.add(key)


# --- helm lint and the Kubernetes schemas -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict(helm: Helm, tmp_path: Path, scenario: str) -> None:
    result = helm.run(
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--values",
        str(write_values(tmp_path, scenario, SCENARIOS[scenario])),
    )
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_valid_for_kubernetes(helm: Helm, tmp_path: Path, scenario: str, version: str) -> None:
    objects = helm.render(write_values(tmp_path, scenario, SCENARIOS[scenario]), kube_version=version)
    checked = []
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        validate_once(obj, version)
        checked.append(obj["kind"])
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "ClusterRole", "Pod"} <= set(checked)


def test_newest_schema_is_newer_than_oldest() -> None:
    major_minor = tuple(int(part) for part in NEWEST.split(".")[:2])
    assert major_minor >= (1, 33), f"kubernetes-validate only knows Kubernetes up to {NEWEST}"


def test_each_helm_call_is_fast(helm: Helm, rendered: dict[str, list[Manifest]]) -> None:
    assert rendered and helm.durations
    assert max(helm.durations) < 5.0, f"slowest helm call took {max(helm.durations):.2f} s"


# --- the webhook registration -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_webhook_fields_the_validator_does_not_check(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = rendered[scenario]
    hook = webhook(objects)
    assert hook["sideEffects"] in ("None", "NoneOnDryRun") and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] in ("Fail", "Ignore")
    assert hook["reinvocationPolicy"] in ("Never", "IfNeeded")
    assert hook["matchPolicy"] in ("Exact", "Equivalent")
    assert 1 <= hook["timeoutSeconds"] <= 30
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    service = one(objects, "Service")
    client = hook["clientConfig"]["service"]
    assert client["path"] == "/mutate-pod"
    assert (client["name"], client["namespace"]) == (service["metadata"]["name"], NAMESPACE)
    port = next(p for p in service["spec"]["ports"] if p["port"] == client["port"])
    assert port["targetPort"] == "webhook"
    assert hook["name"].count(".") >= 2


def test_default_webhook_selects_our_namespace_label_and_fails_closed(
    rendered: dict[str, list[Manifest]],
) -> None:
    hook = webhook(rendered["default"])
    assert hook["namespaceSelector"]["matchLabels"] == {OUR_LABEL: "enabled"}
    assert KATIB_LABEL not in hook["namespaceSelector"]["matchLabels"]
    excluded = hook["namespaceSelector"]["matchExpressions"]
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", NAMESPACE],
    } in excluded
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 10
    assert "objectSelector" not in hook


def test_takeover_uses_katib_label_and_configured_policy(rendered: dict[str, list[Manifest]]) -> None:
    hook = webhook(rendered["katib-takeover"])
    assert hook["namespaceSelector"]["matchLabels"] == {KATIB_LABEL: "enabled"}
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 5)
    assert hook["objectSelector"] == SCENARIOS["katib-takeover"]["webhook"]["objectSelector"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_match_conditions_exclude_injector_and_katib_controller(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = rendered[scenario]
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account
    expressions = [c["expression"] for c in webhook(objects)["matchConditions"]]
    assert f'request.userInfo.username != "system:serviceaccount:{NAMESPACE}:{account}"' in expressions
    assert 'request.userInfo.username != "system:serviceaccount:kubeflow:katib-controller"' in expressions


# --- least-privilege RBAC ----------------------------------------------------------------------------------


def rbac_rules(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    return [
        (obj["kind"], rule)
        for obj in objects
        if obj["kind"] in ("ClusterRole", "Role")
        for rule in obj["rules"]
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_has_no_wildcards_and_only_reads_outside_bootstrap(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = rendered[scenario]
    bootstrap = SCENARIOS[scenario].get("certificates", {}).get("mode") == "bootstrap"
    for _, rule in rbac_rules(objects):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
        assert set(rule["verbs"]) <= {"get", "list", "watch", "update", "patch"}, rule
        writes = set(rule["verbs"]) & {"update", "patch"}
        if writes or "secrets" in rule["resources"]:
            assert bootstrap, f"write or secret access outside bootstrap mode: {rule}"
            assert rule.get("resourceNames"), f"write not limited to named objects: {rule}"
        if "list" in rule["verbs"] or "watch" in rule["verbs"]:
            assert set(rule["resources"]) <= {"trials", "experiments", "suggestions"}, rule


def test_rbac_reads_trials_and_every_training_job_kind(rendered: dict[str, list[Manifest]]) -> None:
    granted = {
        (group, resource)
        for _, rule in rbac_rules(rendered["default"])
        if "get" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    expected = {
        ("kubeflow.org", r)
        for r in (
            "trials",
            "experiments",
            "suggestions",
            "tfjobs",
            "pytorchjobs",
            "mpijobs",
            "xgboostjobs",
            "paddlejobs",
            "jaxjobs",
        )
    }
    expected |= {("batch", "jobs"), ("trainer.kubeflow.org", "trainjobs"), ("jobset.x-k8s.io", "jobsets")}
    assert expected <= granted


def test_bootstrap_mode_writes_only_its_own_secret_and_webhook(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["bootstrap"]
    container = injector_container(objects)
    secret = one(objects, "Secret")
    mwc = one(objects, "MutatingWebhookConfiguration")
    assert arg_value(container, "cert-bootstrap-secret") == secret["metadata"]["name"]
    assert arg_value(container, "webhook-config") == mwc["metadata"]["name"]
    assert "caBundle" not in webhook(objects)["clientConfig"]
    writes = [(kind, rule) for kind, rule in rbac_rules(objects) if {"update", "patch"} & set(rule["verbs"])]
    assert sorted(
        (kind, tuple(rule["resources"]), tuple(rule["resourceNames"])) for kind, rule in writes
    ) == [
        ("ClusterRole", ("mutatingwebhookconfigurations",), (mwc["metadata"]["name"],)),
        ("Role", ("secrets",), (secret["metadata"]["name"],)),
    ]
    role = next(
        o for o in objects if o["kind"] == "Role" and any("secrets" in r["resources"] for r in o["rules"])
    )
    assert role["metadata"]["namespace"] == secret["metadata"]["namespace"] == NAMESPACE
    assert not any("create" in rule["verbs"] for _, rule in rbac_rules(objects))


def test_bindings_point_at_rendered_roles_and_account(rendered: dict[str, list[Manifest]]) -> None:
    for scenario, objects in rendered.items():
        roles = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in ("Role", "ClusterRole")}
        account = one(objects, "ServiceAccount")["metadata"]["name"]
        bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
        assert len(bindings) == len(roles), scenario
        for binding in bindings:
            assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
            ]


# --- certificate modes -------------------------------------------------------------------------------------


def tls_secret_name(objects: list[Manifest]) -> str:
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    name: str = next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"]
    return name


def test_cert_manager_mode(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["cert-manager"]
    service = one(objects, "Service")["metadata"]["name"]
    certs = {c["metadata"]["name"]: c for c in by_kind(objects, "Certificate")}
    issuers = {i["metadata"]["name"]: i for i in by_kind(objects, "Issuer")}
    mwc = one(objects, "MutatingWebhookConfiguration")
    injected = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, name = injected.split("/")
    assert namespace == NAMESPACE and name in certs
    serving = certs[name]["spec"]
    assert serving["secretName"] == tls_secret_name(objects)
    assert f"{service}.{NAMESPACE}.svc" in serving["dnsNames"]
    assert "server auth" in serving["usages"]
    assert serving["issuerRef"]["kind"] == "Issuer" and serving["issuerRef"]["name"] in issuers
    ca_issuer = issuers[serving["issuerRef"]["name"]]["spec"]["ca"]
    ca_certs = [c for c in certs.values() if c["spec"].get("isCA")]
    assert [c["spec"]["secretName"] for c in ca_certs] == [ca_issuer["secretName"]]
    assert ca_certs[0]["spec"]["issuerRef"]["name"] in issuers
    assert not by_kind(objects, "Secret")
    assert "cert-bootstrap-secret" not in " ".join(injector_container(objects)["args"])


def test_cert_manager_with_existing_issuer_creates_only_the_certificate(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["cert-manager-issuer"]
    assert not by_kind(objects, "Issuer")
    cert = one(objects, "Certificate")
    assert cert["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_provided_secret_mode(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["secret"]
    assert tls_secret_name(objects) == "my-webhook-tls"
    assert webhook(objects)["clientConfig"]["caBundle"] == CA_PEM_B64
    assert not by_kind(objects, "Secret") and not by_kind(objects, "Certificate")
    assert "annotations" not in one(objects, "MutatingWebhookConfiguration")["metadata"]


# --- the Deployment ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_deployment_is_highly_available_and_locked_down(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = rendered[scenario]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert one(objects, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": selector},
    }
    assert one(objects, "Service")["spec"]["selector"] == selector
    spread = pod["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    container = injector_container(objects)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "webhook", "scheme": "HTTPS"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert arg_value(container, "listen") == f"0.0.0.0:{ports['webhook']}"
    assert arg_value(container, "metrics-listen") == f"0.0.0.0:{ports['metrics']}"
    assert container["command"] == ["katib-metrics"] and container["args"][:2] == ["injector", "serve"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for flag in ("tls-cert-file", "tls-key-file"):
        path = arg_value(container, flag)
        assert path is not None and mounts[str(Path(path).parent)] == "tls"


def test_image_pinned_by_digest(rendered: dict[str, list[Manifest]]) -> None:
    image = injector_container(rendered["katib-takeover"])["image"]
    assert image == "ghcr.io/katib-metrics/katib-metrics-collector@sha256:" + "a" * 64
    assert injector_container(rendered["default"])["image"].endswith(":0.1.0")


def test_db_manager_address_env(rendered: dict[str, list[Manifest]]) -> None:
    env = {e["name"]: e.get("value") for e in injector_container(rendered["default"])["env"]}
    assert env["KATIB_DB_MANAGER_SERVICE_IP"] == "katib-db-manager"
    assert env["KATIB_DB_MANAGER_SERVICE_NAMESPACE"] == "kubeflow"
    assert env["KATIB_DB_MANAGER_SERVICE_PORT"] == "6789"


# --- the sidecar configuration (katib-config) ---------------------------------------------------------------


def test_chart_katib_config_points_sidecars_at_our_image(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["default"]
    container = injector_container(objects)
    config_map = one(objects, "ConfigMap")
    config = yaml.safe_load(config_map["data"]["katib-config.yaml"])
    assert (config["apiVersion"], config["kind"]) == ("config.kubeflow.org/v1beta1", "KatibConfig")
    collectors = config["runtime"]["metricsCollectors"]
    assert [c["kind"] for c in collectors] == ["StdOut", "File", "TensorFlowEvent", "PrometheusMetric"]
    assert {c["image"] for c in collectors} == {container["image"]}
    assert all(c["imagePullPolicy"] in ("Always", "IfNotPresent", "Never") for c in collectors)
    assert config["init"]["controller"]["injectSecurityContext"] is False
    path = arg_value(container, "katib-config")
    assert path is not None
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(Path(path).parent))
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert Path(path).name == "katib-config.yaml"


def test_katib_config_source_reads_katibs_configmap(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["katib-takeover"]
    container = injector_container(objects)
    assert arg_value(container, "katib-config") is None
    assert arg_value(container, "katib-namespace") == "kubeflow"
    assert not by_kind(objects, "ConfigMap")
    role = next(o for o in by_kind(objects, "Role") if o["metadata"]["namespace"] == "kubeflow")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["katib-config"], "verbs": ["get"]}
    ]


def test_collector_overrides_and_wait_all(helm: Helm, tmp_path: Path) -> None:
    values = {
        "katibConfig": {
            "collectorImage": "registry.local/km:dev",
            "metricsCollectors": [
                {
                    "kind": "StdOut",
                    "waitAllProcesses": False,
                    "resources": {"requests": {"ephemeral-storage": -1}},
                },
                {"kind": "TensorFlowEvent", "image": "registry.local/tfevent:1", "imagePullPolicy": "Always"},
            ],
        }
    }
    objects = helm.render(write_values(tmp_path, "overrides", values))
    collectors = yaml.safe_load(one(objects, "ConfigMap")["data"]["katib-config.yaml"])["runtime"][
        "metricsCollectors"
    ]
    assert collectors == [
        {
            "kind": "StdOut",
            "image": "registry.local/km:dev",
            "imagePullPolicy": "IfNotPresent",
            "waitAllProcesses": False,
            "resources": {"requests": {"ephemeral-storage": -1}},
        },
        {"kind": "TensorFlowEvent", "image": "registry.local/tfevent:1", "imagePullPolicy": "Always"},
    ]


# --- monitoring, notes and the helm test --------------------------------------------------------------------


def test_service_monitor_and_pod_monitor(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["katib-takeover"]
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    pod_monitor = next(
        m for m in by_kind(objects, "PodMonitor") if not m["metadata"]["name"].endswith("-sidecars")
    )
    ports = {p["name"] for p in injector_container(objects)["ports"]}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    assert not by_kind(rendered["default"], "ServiceMonitor") and not by_kind(
        rendered["default"], "PodMonitor"
    )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_test_pod(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    objects = rendered[scenario]
    pods = by_kind(objects, "Pod", hooks=True)
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = one(objects, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items(), (
        "the Service would route to the test pod"
    )
    scripts = by_kind(objects, "ConfigMap", hooks=True)
    assert len(scripts) == 1
    script = scripts[0]
    assert script["data"]["smoke_test.py"] == (CHART / "files" / "smoke_test.py").read_text(encoding="utf-8")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    service = one(objects, "Service")
    assert env["INJECTOR_URL"] == f"https://{service['metadata']['name']}.{NAMESPACE}.svc:443"
    secrets = [v["secret"] for v in pod["spec"].get("volumes", []) if "secret" in v]
    assert all(s["items"] == [{"key": "ca.crt", "path": "ca.crt"}] for s in secrets), "test pod sees a key"
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_notes_tell_how_to_label_namespaces(helm: Helm) -> None:
    result = helm.run("install", "kmi", str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    notes = result.stdout[result.stdout.index("NOTES:") :]
    assert f"kubectl label namespace <trial-namespace> {OUR_LABEL}=enabled" in notes
    assert "helm test kmi" in notes


# --- values.schema.json -------------------------------------------------------------------------------------

INVALID: list[tuple[list[str], str]] = [
    (["webhook.failurePolicy=Sometimes"], "/webhook/failurePolicy"),
    (["webhook.timeoutSeconds=31"], "/webhook/timeoutSeconds"),
    (["webhook.timeoutSeconds=0"], "/webhook/timeoutSeconds"),
    (["webhook.reinvocationPolicy=Always"], "/webhook/reinvocationPolicy"),
    (["webhook.namespaceLabel.key=bad//key"], "/webhook/namespaceLabel/key"),
    (["certificates.mode=selfsigned"], "/certificates/mode"),
    (["certificates.mode=secret"], "/certificates/secret/name"),
    (["certificates.mode=secret", "certificates.secret.name=tls"], "/certificates/secret/caBundle"),
    (["certificates.certManager.duration=1year"], "/certificates/certManager/duration"),
    (["replicaCount=0"], "/replicaCount"),
    (["image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["image.digest=sha1:abc"], "/image/digest"),
    (["katibConfig.source=configmap"], "/katibConfig/source"),
    (["katibConfig.metricsCollectors[0].kind=Push"], "/katibConfig/metricsCollectors/0/kind"),
    (["resources.limits.memory=lots"], "/resources/limits/memory"),
    (["podDisruptionBudget.minAvailable=half"], "/podDisruptionBudget/minAvailable"),
    (["service.port=70000"], "/service/port"),
    (["sidecar.metricsPort=-1"], "/sidecar/metricsPort"),
    (["webhhook.failurePolicy=Fail"], "webhhook"),
    (["networkPolicy.egress.exceptCIDRs={169.254.169.254}"], "/networkPolicy/egress/exceptCIDRs/0"),
    (["networkPolicy.egress.ports={0}"], "/networkPolicy/egress/ports/0"),
    (["networkPolicy.webhookFrom=10.0.0.0/8"], "/networkPolicy/webhookFrom"),
]


@pytest.mark.parametrize(("sets", "where"), INVALID, ids=[w for _, w in INVALID])
def test_schema_rejects_invalid_values(helm: Helm, sets: list[str], where: str) -> None:
    args = helm.template_args(None, OLDEST)
    for item in sets:
        args += ["--set", item]
    result = helm.run(*args, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr, result.stderr


def test_kube_version_below_minimum_is_refused(helm: Helm) -> None:
    result = helm.run(*helm.template_args(None, "1.27.0"), check=False)
    assert result.returncode != 0 and "kubeVersion" in result.stderr


def test_sidecar_options_become_injector_flags(rendered: dict[str, list[Manifest]]) -> None:
    default_args = injector_container(rendered["default"])["args"]
    assert not [a for a in default_args if "sidecar" in a]
    args = injector_container(rendered["katib-takeover"])["args"]
    assert {"--native-sidecar", "--sidecar-metrics-port=9464", "--no-sidecar-security-context"} <= set(args)


def test_sidecar_pod_monitor_scrapes_collector_containers(rendered: dict[str, list[Manifest]]) -> None:
    monitor = next(
        m
        for m in by_kind(rendered["katib-takeover"], "PodMonitor")
        if m["metadata"]["name"].endswith("-sidecars")
    )
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "katib.kubeflow.org/trial", "operator": "Exists"}
    ]
    keep, address = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert keep["action"] == "keep" and keep["regex"] == "metrics-logger-and-collector|metrics-collector"
    assert (address["targetLabel"], address["replacement"]) == ("__address__", "${1}:9464")


def test_sidecar_pod_monitor_needs_a_metrics_port(helm: Helm) -> None:
    args = helm.template_args(None, OLDEST, "--set", "sidecarPodMonitor.enabled=true")
    result = helm.run(*args, check=False)
    assert result.returncode != 0 and "needs sidecar.metricsPort > 0" in result.stderr


# --- the network policy ---------------------------------------------------------------------------------------


def test_no_network_policy_by_default(rendered: dict[str, list[Manifest]]) -> None:
    assert not by_kind(rendered["default"], "NetworkPolicy")


def _port_rule(rules: list[Manifest], port: str) -> Manifest:
    return next(rule for rule in rules if [p["port"] for p in rule["ports"]] == [port])


def test_network_policy_limits_callers_and_keeps_egress_off_metadata(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["network-policy"]
    policy = one(objects, "NetworkPolicy")["spec"]
    deployment = one(objects, "Deployment")
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ports = {p["name"] for p in injector_container(objects)["ports"]}
    assert {"webhook", "metrics"} <= ports  # the named ports the policy opens exist
    webhook_from = _port_rule(policy["ingress"], "webhook")["from"]
    assert webhook_from[0] == {"ipBlock": {"cidr": "10.0.0.0/24"}}
    test_pod = by_kind(objects, "Pod", hooks=True)[0]
    selector = webhook_from[1]["podSelector"]["matchLabels"]
    assert selector.items() <= test_pod["metadata"]["labels"].items()  # `helm test` still reaches the webhook
    assert _port_rule(policy["ingress"], "metrics")["from"][0]["namespaceSelector"]
    dns, api, extra = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    v4, v6 = (peer["ipBlock"] for peer in api["to"])
    assert v4["cidr"] == "0.0.0.0/0" and {"169.254.0.0/16", "127.0.0.0/8"} <= set(v4["except"])
    assert v6["cidr"] == "::/0" and "fe80::/10" in v6["except"]
    assert extra["ports"] == [{"port": 5000, "protocol": "TCP"}]


def test_network_policy_without_peers_leaves_the_webhook_open_and_metrics_closed(
        rendered: dict[str, list[Manifest]]) -> None:
    policy = one(rendered["network-policy-open"], "NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"ports": [{"port": "webhook", "protocol": "TCP"}]}]  # no `from`: any source
    assert len(policy["egress"]) == 2
