"""Benchmark: admissions per second and latency of `katib-metrics injector serve` under 32 concurrent TLS clients.

Starts the local Kubernetes API stand-in (tests/injector/apiserver.py) holding a Job → Trial chain, a
Suggestion and katib-config, runs the real `injector serve` as its own process with a fresh CA and serving
certificate, then 32 client threads (one keep-alive HTTPS connection each, verifying the certificate) POST
AdmissionReviews of trial pods to /mutate-pod for the given duration. Every answer is checked (allowed, with a
JSON patch). With --trials K the pods are spread over K trials, so each trial's first pods miss the cache.

Usage: python benchmarks/injector.py [--clients 32] [--seconds 20] [--trials 1] [--warmup 2] [--rate R]
                                    [--processes P] [--nice N]
Prints one summary line, the CPU time each admission cost the server and the load generator (the machine's
load average next to it), and the server's own admission counters.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import multiprocessing
import os
import pathlib
import queue
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from katib_metrics.injector.certs import issue_certificates  # noqa: E402
from tests.injector import factories as f  # noqa: E402
from tests.injector.apiserver import FakeApiServer  # noqa: E402


def start_api(trials: int) -> FakeApiServer:
    api = FakeApiServer()
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    for index in range(trials):
        name = f"exp-{index:05d}"
        api.add({"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": name, "namespace": "team-a",
                              "ownerReferences": [{"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
                                                   "name": name, "uid": f"u{index}", "controller": True}]}}, "jobs")
        api.add(f.trial(name=name, rules=[{"name": "accuracy", "value": "0.5", "comparison": "less"}]), "trials")
    suggestion = f.experiment("medianstop")
    suggestion["kind"] = "Suggestion"
    api.add(suggestion, "suggestions")
    return api


def start_injector(api: FakeApiServer, tmp: pathlib.Path) -> tuple[subprocess.Popen[str], int, int]:
    issued = issue_certificates(["localhost"], ip_addresses=["127.0.0.1"])
    for name, data in (("ca.crt", issued.ca_pem), ("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
        (tmp / name).write_bytes(data)
    (tmp / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "local", "cluster": {"server": api.url}}],
        "users": [{"name": "injector", "user": {"token": "bench"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "local", "user": "injector"}}]}))
    (tmp / "katib-config.yaml").write_text(f.ALL_KINDS_CONFIG)
    argv = [sys.executable, "-m", "katib_metrics.injector.cli", "serve", "--listen", "127.0.0.1:0", "--metrics-listen",
            "127.0.0.1:0", "--tls-cert-file", str(tmp / "tls.crt"), "--tls-key-file", str(tmp / "tls.key"),
            "--kubeconfig", str(tmp / "kubeconfig"), "--katib-config", str(tmp / "katib-config.yaml")]
    env = {**os.environ, "KATIB_INJECTOR_LOG_LEVEL": "INFO"}  # as deployed: one log line per mutated pod
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:  # keeps reading its log, as a container runtime does, so it never blocks on a full pipe
        for line in process.stderr or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    ports: list[int] = []
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while len(ports) < 2 and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if match:
            ports.append(int(match.group(1)))
    if len(ports) < 2:
        process.kill()
        raise SystemExit("injector serve did not start:\n" + "".join(seen))
    return process, ports[0], ports[1]


def review(index: int, trials: int) -> bytes:
    pod = f.pod(owner_name=f"exp-{index % trials:05d}")
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": f"uid-{index}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "operation": "CREATE", "namespace": "team-a", "object": pod}}).encode()


class Client(threading.Thread):
    """One keep-alive connection. Closed loop (next request when the last is answered), or paced: request k of
    client n is due at start + (k * clients + n) / rate and its latency counts from then, so a server that
    falls behind is charged for the wait (no coordinated omission)."""

    def __init__(self, number: int, args: argparse.Namespace, port: int, context: ssl.SSLContext,
                 start_at: float) -> None:
        super().__init__(daemon=True)
        self.number, self.args, self.port, self.context = number, args, port, context
        self.start_at = start_at
        self.record_from = start_at + args.warmup
        self.stop_at = self.record_from + args.seconds
        self.latencies: list[float] = []
        self.errors = 0

    def _due(self, k: int) -> float:
        if not self.args.rate:
            return time.perf_counter()
        due: float = self.start_at + (k * self.args.clients + self.number) / self.args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the load generator
        return due

    def run(self) -> None:
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=30)
        conn.connect()
        if (delay := self.start_at - time.perf_counter()) > 0:
            time.sleep(delay)  # every client of every process starts at the same instant
        k = 0
        # The body is built before the request is due and the answer checked after its latency is taken, so
        # the load generator's own work is not charged to the server.
        while (body := review(k * self.args.clients + self.number, self.args.trials)) and \
                (due := self._due(k)) < self.stop_at:
            k += 1
            conn.request("POST", "/mutate-pod", body=body, headers={"Content-Type": "application/json"})
            data = conn.getresponse().read()
            elapsed = time.perf_counter() - due
            response = json.loads(data)["response"]
            if not (response["allowed"] and response.get("patch")):
                self.errors += 1
            if due >= self.record_from:
                self.latencies.append(elapsed)
        conn.close()


def run_clients(numbers: list[int], args: argparse.Namespace, port: int, ca_file: str,
                start_at: float) -> tuple[list[float], int, float]:
    """Clients `numbers` as threads of this process: (latencies, errors, CPU seconds this process used)."""
    cpu = time.process_time()
    context = ssl.create_default_context(cafile=ca_file)
    clients = [Client(n, args, port, context, start_at) for n in numbers]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    return ([value for client in clients for value in client.latencies], sum(c.errors for c in clients),
            time.process_time() - cpu)


def drive(args: argparse.Namespace, port: int, ca_file: str) -> tuple[list[float], int, float]:
    """All clients, in this process or spread over --processes (perf_counter is one clock for all of them)."""
    numbers = list(range(args.clients))
    if args.processes <= 1:
        return run_clients(numbers, args, port, ca_file, time.perf_counter() + 0.5)
    start_at = time.perf_counter() + 5.0  # time for the workers to start and connect
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.processes, mp_context=spawn) as pool:
        parts = [pool.submit(run_clients, numbers[i::args.processes], args, port, ca_file, start_at)
                 for i in range(args.processes)]
        results = [part.result() for part in parts]
    return ([value for part in results for value in part[0]], sum(part[1] for part in results),
            sum(part[2] for part in results))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="admissions/s in total, paced (default: closed loop)")
    parser.add_argument("--processes", type=int, default=1,
                        help="spread the clients over this many load-generator processes, so that their own GIL "
                             "does not delay them (the API server is not one Python process; default 1)")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the injector and the load generator at this niceness (e.g. -5, as root): what a "
                             "CPU reservation gives the webhook on a node busy with other work (default 0)")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)  # before any thread or child starts: they inherit it
    api = start_api(args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        process, port, metrics_port = start_injector(api, pathlib.Path(tmp))
        try:
            server_cpu = cpu_seconds(process.pid)
            latencies, errors, client_cpu = drive(args, port, str(pathlib.Path(tmp) / "ca.crt"))
            server_cpu = cpu_seconds(process.pid) - server_cpu
            conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
            conn.request("GET", "/metrics")
            counters = [line for line in conn.getresponse().read().decode().splitlines()
                        if line.startswith("katib_injector_admissions_total")]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
    load = f"paced at {args.rate:g}/s" if args.rate else "closed loop"
    print(f"{args.clients} clients in {args.processes} process(es), {load}, {args.trials} trial(s), "
          f"{args.seconds:g} s measured: "
          f"{len(latencies) / args.seconds:.0f} admissions/s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
          f"{len(latencies)} admissions, {errors} not mutated; API reads: {sum(api.hits.values())}")
    total = sum(float(line.rsplit(" ", 1)[1]) for line in counters)
    print(f"CPU per admission (warm-up included): server {server_cpu / total * 1000:.2f} ms, "
          f"load generator {client_cpu / total * 1000:.2f} ms; load average {os.getloadavg()[0]:.1f}; "
          f"niceness {os.getpriority(os.PRIO_PROCESS, 0)}")
    print("\n".join(counters))


if __name__ == "__main__":
    main()
