"""helm test: the injector answers through its Service: /healthz, /readyz and one AdmissionReview.

Run by templates/tests/test-injector.yaml with the image's own Python (stdlib only). Environment:
INJECTOR_URL (https://<service>.<namespace>.svc:<port>), CA_FILE (PEM, used when present and non-empty),
CA_PEM_BASE64 (base64 PEM, used when set), TIMEOUT_SECONDS (per request, default 10).
The TLS certificate is verified against the service's DNS name whenever a CA is known.
"""

import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
import uuid


def tls_context() -> tuple[ssl.SSLContext, str]:
    ca_b64 = os.environ.get("CA_PEM_BASE64", "")
    if ca_b64:
        pem = base64.b64decode(ca_b64).decode("ascii")
        return ssl.create_default_context(cadata=pem), "verified against the configured caBundle"
    ca_file = os.environ.get("CA_FILE", "")
    if ca_file and os.path.isfile(ca_file) and os.path.getsize(ca_file) > 0:
        return ssl.create_default_context(cafile=ca_file), f"verified against {ca_file}"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context, "NOT verified (no CA available to the test pod)"


def request(url: str, context: ssl.SSLContext, body: bytes | None = None) -> tuple[int, bytes]:
    timeout = float(os.environ.get("TIMEOUT_SECONDS", "10"))
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def admission_review(uid: str) -> bytes:
    # A pod that no Trial owns: the webhook must allow it untouched without any API read.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "katib-metrics-helm-test", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["true"]}]},
    }
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "katib-metrics-helm-test", "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:default:helm-test"},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    return json.dumps(review).encode()


def check_review(status: int, payload: bytes, uid: str) -> list[str]:
    if status != 200:
        return [f"/mutate-pod answered HTTP {status}: {payload[:300]!r}"]
    response = json.loads(payload).get("response") or {}
    problems = []
    if response.get("uid") != uid:
        problems.append(f"response.uid is {response.get('uid')!r}, expected the request's {uid!r}")
    if response.get("allowed") is not True:
        problems.append(f"a pod no Trial owns was not allowed: {response.get('status')}")
    if response.get("patch"):
        problems.append("a pod no Trial owns was patched")
    return problems


def main() -> int:
    base = os.environ["INJECTOR_URL"].rstrip("/")
    context, how = tls_context()
    print(f"injector at {base}; TLS {how}")
    problems = []
    for path in ("/healthz", "/readyz"):
        status, payload = request(base + path, context)
        print(f"GET {path}: HTTP {status}")
        if status != 200:
            problems.append(f"GET {path} answered HTTP {status}: {payload[:300]!r}")
    uid = str(uuid.uuid4())
    status, payload = request(base + "/mutate-pod", context, admission_review(uid))
    print(f"POST /mutate-pod: HTTP {status}")
    problems += check_review(status, payload, uid)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if not problems:
        print("OK: the injector is healthy, ready and admits a pod no Trial owns unchanged")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ssl.SSLError) as err:
        print(f"FAIL: cannot reach the injector: {err}", file=sys.stderr)
        sys.exit(1)
