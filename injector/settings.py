"""Resolves the injector's settings from options, then the environment, then defaults (only cli.py calls it)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SHIPPED_KATIB_CONFIG", "BootstrapSettings", "ServeSettings", "db_manager_address", "split_host_port"]

# Katib's shipped `runtime.metricsCollectors` (all installs), used by `injector mutate` without --config.
SHIPPED_KATIB_CONFIG = """\
apiVersion: config.kubeflow.org/v1beta1
kind: KatibConfig
runtime:
  metricsCollectors:
    - kind: StdOut
      image: ghcr.io/kubeflow/katib/file-metrics-collector:latest
    - kind: File
      image: ghcr.io/kubeflow/katib/file-metrics-collector:latest
    - kind: TensorFlowEvent
      image: ghcr.io/kubeflow/katib/tfevent-metrics-collector:latest
      resources:
        limits:
          memory: 1Gi
"""


def db_manager_address(env: Mapping[str, str]) -> str:
    """Katib's `GetDBManagerAddr()`: `<ip>.<ns>:<port>`, or `<ip>:<port>` when the namespace is empty."""
    host = env.get("KATIB_DB_MANAGER_SERVICE_IP") or "katib-db-manager"
    namespace = env.get("KATIB_DB_MANAGER_SERVICE_NAMESPACE", env.get("KATIB_CORE_NAMESPACE", "kubeflow"))
    port = env.get("KATIB_DB_MANAGER_SERVICE_PORT") or "6789"
    return f"{host}.{namespace}:{port}" if namespace else f"{host}:{port}"


def split_host_port(text: str, option: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8443`) → (host, port); ValueError names the option."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{option} wants HOST:PORT (e.g. 0.0.0.0:8443), got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class BootstrapSettings:
    """Certificate bootstrap: which Secret holds the certificate, which webhook trusts it, where files go."""

    namespace: str
    secret: str
    webhook_config: str
    cert_dir: str
    dns_names: tuple[str, ...] = ()  # else the names of the service the webhook configuration calls
    validity_days: int = 365
    renew_before: datetime.timedelta = datetime.timedelta(days=30)
    check_interval: float = 3600.0


@dataclass(frozen=True, slots=True)
class ServeSettings:
    listen: tuple[str, int] = ("0.0.0.0", 8443)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    katib_config_file: str | None = None
    katib_namespace: str = "kubeflow"
    kubeconfig: str | None = None
    metrics_listen: tuple[str, int] | None = None
    cache_ttl: float = 30.0
    api_timeout: float = 5.0
    cert_check_interval: float = 2.0
    bootstrap: BootstrapSettings | None = None
