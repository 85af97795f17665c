"""`katib-metrics injector serve`: its options and the wiring of resolver, handler, servers and signals."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

from injector.admission import AdmissionHandler
from injector.certs import CertificateReloader
from injector.config import KatibConfig
from injector.errors import ConfigError
from injector.metrics import InjectorMetrics
from injector.registry import RegistryClient
from injector.resolve import ApiResolver, KubeReader, kube_config
from injector.server import WebhookApp, WebhookServer, start_in_thread
from injector.settings import ServeSettings, split_host_port
from injector.sidecar import SidecarOptions

__all__ = ["add_serve_parser", "build_servers", "registry_client", "run_serve"]

log = logging.getLogger(__name__)


def add_serve_parser(commands: Any, add_sidecar_options: Callable[[argparse.ArgumentParser], None]) -> None:
    serve = commands.add_parser(
        "serve", help="run the HTTPS admission webhook (POST /mutate-pod)",
        description="The mutating admission webhook: AdmissionReview v1 on POST /mutate-pod, plus /healthz, "
                    "/readyz and /metrics. Certificates are reloaded when their files change.")
    serve.add_argument("--listen", default="0.0.0.0:8443", metavar="HOST:PORT",
                       help="TLS address (default %(default)s)")
    serve.add_argument("--tls-cert-file", required=True, metavar="FILE", help="serving certificate (PEM)")
    serve.add_argument("--tls-key-file", required=True, metavar="FILE", help="its private key (PEM)")
    serve.add_argument("--katib-config", metavar="FILE",
                       help="KatibConfig or katib-config ConfigMap YAML (default: the ConfigMap katib-config read "
                            "through the API in --katib-namespace, re-read at most every 30 s)")
    serve.add_argument("--katib-namespace", default="kubeflow", help="where katib-config lives (default %(default)s)")
    serve.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG, else in-cluster)")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT",
                       help="also serve /metrics, /healthz and /readyz over plain HTTP here")
    serve.add_argument("--api-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="timeout of each Kubernetes API read (default %(default)s)")
    _add_registry_options(serve)
    add_sidecar_options(serve)


def _add_registry_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "image entrypoints", "A training container without `command` is wrapped around its image's Entrypoint and "
        "Cmd, read from the registry with the pod's pull secrets (and its service account's), else anonymously. "
        "When that fails the pod is denied with a message asking for `command`.")
    group.add_argument("--registry-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="total time for one image lookup; keep it below the webhook's timeoutSeconds "
                            "(default %(default)s)")
    group.add_argument("--registry-ca-file", metavar="FILE",
                       help="PEM CA bundle trusted for registries (default: the system's)")
    group.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                       help="talk plain HTTP to this registry (repeatable; e.g. a local kind registry)")
    group.add_argument("--image-platform", default="linux/amd64", metavar="OS/ARCH[/VARIANT]",
                       help="the variant read from multi-platform images (default %(default)s)")


def registry_client(args: argparse.Namespace) -> RegistryClient:
    context = None
    if args.registry_ca_file:
        try:
            context = ssl.create_default_context(cafile=args.registry_ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"--registry-ca-file {args.registry_ca_file}: {err}") from err
    if args.registry_timeout <= 0:
        raise ConfigError(f"--registry-timeout must be positive, got {args.registry_timeout}")
    try:
        return RegistryClient(timeout=args.registry_timeout, ssl_context=context,
                              insecure_registries=args.insecure_registry, platform=args.image_platform)
    except ValueError as err:
        raise ConfigError(f"--image-platform: {err}") from err


def settings_from(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        listen=split_host_port(args.listen, "--listen"),
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        katib_config_file=args.katib_config,
        katib_namespace=args.katib_namespace,
        kubeconfig=args.kubeconfig,
        metrics_listen=split_host_port(args.metrics_listen, "--metrics-listen") if args.metrics_listen else None,
        api_timeout=args.api_timeout,
    )


def build_servers(settings: ServeSettings, resolver: ApiResolver, options: SidecarOptions,
                  metrics: InjectorMetrics | None = None) -> list[WebhookServer]:
    metrics = metrics or InjectorMetrics()
    app = WebhookApp(AdmissionHandler(resolver, options), metrics)
    reloader = CertificateReloader(
        settings.tls_cert_file, settings.tls_key_file, interval=settings.cert_check_interval,
        on_load=lambda ok: metrics.cert_reloads.labels(result="success" if ok else "failure").inc())
    servers = [WebhookServer(settings.listen, app, reloader)]
    if settings.metrics_listen is not None:
        servers.append(WebhookServer(settings.metrics_listen, app, None, webhook=False))
    app.ready.set()
    metrics.ready.set(1)
    return servers


def run_serve(args: argparse.Namespace, env: Mapping[str, str], options: SidecarOptions,
              static_config: KatibConfig | None) -> int:
    settings = settings_from(args)
    reader = KubeReader.connect(kube_config(settings.kubeconfig, env), settings.api_timeout)
    resolver = ApiResolver(reader, katib_namespace=settings.katib_namespace, static_config=static_config,
                           ttl=settings.cache_ttl, images=registry_client(args))
    servers = build_servers(settings, resolver, options)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for server in servers:
        start_in_thread(server)
        log.info("listening on %s:%d", *server.server_address[:2])
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0
