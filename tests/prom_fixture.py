"""A real Prometheus server (Debian `prometheus`) on loopback: scrapes the given targets, answers queries.

Import the fixture into a test module (`from tests.prom_fixture import prometheus`) and call it with
the `host:port` targets to scrape. The server runs with a temporary config and storage directory and
is stopped by its PID. A scraped value reaches `/api/v1/query` only after about 5-6 s (Prometheus
pushes target updates every 5 s), so `wait_for` polls with a deadline of 15 s by default.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

requires_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="the Debian package `prometheus` is not installed (apt-get install prometheus)"
)
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package `prometheus`) is missing"
)

Result = list[dict[str, Any]]
_POLL = 0.2  # between queries of an external server: it has no event to wait on


@dataclass
class PrometheusServer:
    """A running Prometheus; `query` runs an instant query, `wait_for` polls one until it holds."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _opener: urllib.request.OpenerDirector = field(
        default_factory=lambda: urllib.request.build_opener(urllib.request.ProxyHandler({}))
    )

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with self._opener.open(f"{self.url}{path}{query}", timeout=5) as response:
            return json.load(response)

    def query(self, expr: str) -> Result:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: Result = answer["data"]["result"]
        return result

    def wait_for(
        self, expr: str, predicate: Callable[[Result], bool] = bool, timeout: float = 15.0
    ) -> Result:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{expr!r} did not satisfy the condition within {timeout} s; last result {result}; "
                    f"targets {self.get('/api/v1/targets')['data']['activeTargets']}"
                )
            time.sleep(_POLL)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(targets: Sequence[str], metrics_path: str, interval: str) -> str:
    # JSON is YAML: no YAML library needed.
    return json.dumps(
        {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": "katib",
                    "metrics_path": metrics_path,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
    )


def start_prometheus(
    workdir: Path, targets: Sequence[str], *, metrics_path: str = "/metrics", interval: str = "1s"
) -> PrometheusServer:
    """Start Prometheus scraping `targets` (`host:port`) and return it once `/-/ready` answers."""
    assert PROMETHEUS is not None
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(targets, metrics_path, interval), encoding="utf-8")
    for _attempt in range(3):  # the free port may be taken between probing and binding
        server = _launch(workdir, config, _free_port())
        if _ready(server, timeout=15.0):
            return server
        server.stop()
    raise AssertionError(f"prometheus did not become ready; its log:\n{server.log_path.read_text()}")


def _launch(workdir: Path, config: Path, port: int) -> PrometheusServer:
    assert PROMETHEUS is not None
    log_path = workdir / f"prometheus-{port}.log"
    storage = workdir / f"data-{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return PrometheusServer(f"http://127.0.0.1:{port}", process, log_path)


def _ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with server._opener.open(f"{server.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """A factory: `prometheus(["127.0.0.1:PORT"], metrics_path="/metrics")`; servers stop at teardown."""
    if PROMETHEUS is None:
        pytest.skip("the Debian package `prometheus` is not installed (apt-get install prometheus)")
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str], **options: Any) -> PrometheusServer:
        server = start_prometheus(tmp_path / f"prometheus-{len(started)}", targets, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def promtool_check_metrics(text: bytes) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on exposition text: exit 0 clean, 3 lint problems, 1 parse error."""
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.decode(), capture_output=True, text=True, timeout=30
    )
