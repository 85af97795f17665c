"""`katib-metrics injector serve`: its options and the wiring of resolver, handler, servers and signals."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import math
import os
import re
import signal
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from katib_metrics.injector.admission import AdmissionHandler
from katib_metrics.injector.bootstrap import CertificateBootstrap, CertificateKeeper, write_placeholder
from katib_metrics.injector.certs import CertificateReloader
from katib_metrics.injector.config import KatibConfig
from katib_metrics.injector.errors import ConfigError
from katib_metrics.injector.metrics import InjectorMetrics
from katib_metrics.injector.registry import RegistryClient
from katib_metrics.injector.resolve import ApiResolver, KubeConfig, KubeReader, default_namespace, kube_config
from katib_metrics.injector.server import MAX_BODY, Limits, WebhookApp, WebhookServer, start_in_thread
from katib_metrics.injector.settings import BootstrapSettings, ServeSettings, split_host_port
from katib_metrics.injector.sidecar import SidecarOptions

__all__ = ["add_serve_parser", "build_servers", "registry_client", "run_serve"]

log = logging.getLogger(__name__)


def add_serve_parser(commands: Any, add_sidecar_options: Callable[[argparse.ArgumentParser], None]) -> None:
    serve = commands.add_parser(
        "serve", help="run the HTTPS admission webhook (POST /mutate-pod)",
        description="The mutating admission webhook: AdmissionReview v1 on POST /mutate-pod, plus /healthz, "
                    "/readyz and /metrics. Certificates are reloaded when their files change.")
    serve.add_argument("--listen", default="0.0.0.0:8443", metavar="HOST:PORT",
                       help="TLS address (default %(default)s)")
    serve.add_argument("--tls-cert-file", metavar="FILE",
                       help="serving certificate (PEM); required unless --cert-bootstrap-secret is given")
    serve.add_argument("--tls-key-file", metavar="FILE", help="its private key (PEM)")
    serve.add_argument("--katib-config", metavar="FILE",
                       help="KatibConfig or katib-config ConfigMap YAML (default: the ConfigMap katib-config read "
                            "through the API in --katib-namespace, re-read at most every 30 s)")
    serve.add_argument("--katib-namespace", default="kubeflow", help="where katib-config lives (default %(default)s)")
    serve.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG, else in-cluster)")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT",
                       help="also serve /metrics, /healthz and /readyz over plain HTTP here")
    serve.add_argument("--api-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="timeout of each Kubernetes API read (default %(default)s)")
    _add_limit_options(serve)
    _add_registry_options(serve)
    _add_bootstrap_options(serve)
    add_sidecar_options(serve)


_DEFAULTS = Limits()


def _add_limit_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "client limits", "Any pod can connect to the webhook: connections, request time and request bodies held in "
        "memory are bounded, so stalled or slow clients cannot exhaust it. When all connections are taken, a new "
        "one evicts the oldest idle or unfinished one.")
    group.add_argument("--max-connections", type=int, default=_DEFAULTS.max_connections, metavar="N",
                       help="connections (and threads) per listener (default %(default)s)")
    group.add_argument("--request-timeout", type=float, default=_DEFAULTS.request_timeout, metavar="SECONDS",
                       help="time for one whole request, headers and body (default %(default)s)")
    group.add_argument("--body-budget", type=int, default=_DEFAULTS.body_budget >> 20, metavar="MIB",
                       help="request-body bytes held in memory by all connections together, in MiB "
                            "(default %(default)s; keep it well below the container's memory limit)")


_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


def seconds(value: float, flag: str) -> float:
    """`value` if it is a positive, finite number of seconds; ConfigError naming `flag` otherwise."""
    if not 0 < value < math.inf:
        raise ConfigError(f"{flag} must be a positive number of seconds, got {value:g}")
    return value


def hosts(entries: list[str], flag: str) -> list[str]:
    for entry in entries:
        if not _HOST.fullmatch(entry):
            raise ConfigError(f"{flag} {entry!r} is not HOST[:PORT] (e.g. registry.local:5000)")
    return entries


def limits_from(args: argparse.Namespace) -> Limits:
    if args.max_connections < 1:
        raise ConfigError(f"--max-connections must be at least 1, got {args.max_connections}")
    seconds(args.request_timeout, "--request-timeout")
    if args.body_budget < MAX_BODY >> 20:
        raise ConfigError(f"--body-budget must be at least {MAX_BODY >> 20} MiB (one largest review), "
                          f"got {args.body_budget}")
    return Limits(max_connections=args.max_connections, request_timeout=args.request_timeout,
                  body_budget=args.body_budget << 20)


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
    group.add_argument("--allow-local-registry", action="append", default=[], metavar="HOST[:PORT]",
                       help="a registry that may be on a loopback, link-local or metadata address; lookups (and "
                            "their redirects) never go to such addresses otherwise (repeatable)")
    group.add_argument("--image-platform", default="linux/amd64", metavar="OS/ARCH[/VARIANT]",
                       help="the variant read from multi-platform images (default %(default)s)")


def _add_bootstrap_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "certificate bootstrap", "With --cert-bootstrap-secret the injector makes its own serving certificate: a "
        "self-signed CA and a certificate for the service the webhook configuration calls, kept in the Secret "
        "(adopted when valid, renewed 30 days before expiry), written to --cert-dir and served from there "
        "(--tls-cert-file/--tls-key-file are then not read), and the CA patched into the configuration's caBundle. "
        "The listeners start at once; /readyz answers 503 until the certificate is in place, and failed attempts "
        "are retried with backoff and logged.")
    group.add_argument("--cert-bootstrap-secret", metavar="NAME", help="the Secret that holds the certificate")
    group.add_argument("--webhook-config", metavar="NAME",
                       help="the MutatingWebhookConfiguration whose caBundle is set (required with bootstrap)")
    group.add_argument("--cert-bootstrap-namespace", metavar="NAMESPACE",
                       help="the Secret's namespace (default: $POD_NAMESPACE, else the service account's or the "
                            "kubeconfig context's namespace)")
    group.add_argument("--cert-dir", metavar="DIR", default=os.path.join(tempfile.gettempdir(), "katib-metrics-tls"),
                       help="where tls.crt, tls.key and ca.crt are written (default %(default)s)")
    group.add_argument("--cert-dns-name", action="append", default=[], metavar="NAME",
                       help="DNS name of the certificate (repeatable; default: <service>.<namespace>.svc and "
                            "<service>.<namespace>.svc.cluster.local of the webhook's service)")
    group.add_argument("--cert-check-interval", type=float, default=3600.0, metavar="SECONDS",
                       help="how often the Secret is checked for renewal or a peer's renewal (default %(default)s)")


def bootstrap_settings(args: argparse.Namespace, env: Mapping[str, str]) -> BootstrapSettings | None:
    if not args.cert_bootstrap_secret:
        if args.webhook_config:
            raise ConfigError("--webhook-config is only used with --cert-bootstrap-secret")
        return None
    if not args.webhook_config:
        raise ConfigError("--cert-bootstrap-secret needs --webhook-config NAME: the MutatingWebhookConfiguration "
                          "whose caBundle must trust the certificate")
    seconds(args.cert_check_interval, "--cert-check-interval")
    # An empty namespace is resolved from the Kubernetes credentials once they are loaded.
    return BootstrapSettings(namespace=args.cert_bootstrap_namespace or env.get("POD_NAMESPACE", ""),
                             secret=args.cert_bootstrap_secret, webhook_config=args.webhook_config,
                             cert_dir=args.cert_dir, dns_names=tuple(args.cert_dns_name),
                             check_interval=args.cert_check_interval)


def registry_client(args: argparse.Namespace) -> RegistryClient:
    context = None
    if args.registry_ca_file:
        try:
            context = ssl.create_default_context(cafile=args.registry_ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"--registry-ca-file {args.registry_ca_file}: {err}") from err
    seconds(args.registry_timeout, "--registry-timeout")
    hosts(args.insecure_registry, "--insecure-registry")
    hosts(args.allow_local_registry, "--allow-local-registry")
    try:
        return RegistryClient(timeout=args.registry_timeout, ssl_context=context,
                              insecure_registries=args.insecure_registry, platform=args.image_platform,
                              allow_local=args.allow_local_registry)
    except ValueError as err:
        raise ConfigError(f"--image-platform: {err}") from err


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> ServeSettings:
    bootstrap = bootstrap_settings(args, env)
    if bootstrap is None and not (args.tls_cert_file and args.tls_key_file):
        raise ConfigError("pass --tls-cert-file and --tls-key-file, or --cert-bootstrap-secret and --webhook-config "
                          "for a certificate the injector makes itself")
    if bootstrap is not None:
        cert_file, key_file = os.path.join(bootstrap.cert_dir, "tls.crt"), os.path.join(bootstrap.cert_dir, "tls.key")
        if args.tls_cert_file:
            log.info("certificate bootstrap: serving %s, not --tls-cert-file %s", cert_file, args.tls_cert_file)
    else:
        cert_file, key_file = args.tls_cert_file, args.tls_key_file
    seconds(args.api_timeout, "--api-timeout")
    if not _DNS_LABEL.fullmatch(args.katib_namespace):
        raise ConfigError(f"--katib-namespace {args.katib_namespace!r} is not a namespace name (e.g. kubeflow)")
    try:
        listen = split_host_port(args.listen, "--listen")
        metrics_listen = split_host_port(args.metrics_listen, "--metrics-listen") if args.metrics_listen else None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return ServeSettings(
        listen=listen,
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        bootstrap=bootstrap,
        katib_config_file=args.katib_config,
        katib_namespace=args.katib_namespace,
        kubeconfig=args.kubeconfig,
        metrics_listen=metrics_listen,
        api_timeout=args.api_timeout,
    )


def build_servers(settings: ServeSettings, resolver: ApiResolver, options: SidecarOptions,
                  metrics: InjectorMetrics | None = None, ready: bool = True,
                  limits: Limits | None = None) -> list[WebhookServer]:
    metrics = metrics or InjectorMetrics()
    app = WebhookApp(AdmissionHandler(resolver, options), metrics)
    try:
        reloader = CertificateReloader(
            settings.tls_cert_file, settings.tls_key_file, interval=settings.cert_check_interval,
            on_load=lambda ok: metrics.cert_reloads.labels(result="success" if ok else "failure").inc())
    except (OSError, ssl.SSLError, ValueError) as err:
        raise ConfigError(f"cannot load the serving certificate {settings.tls_cert_file} and key "
                          f"{settings.tls_key_file}: {getattr(err, 'strerror', None) or err}; give a PEM "
                          "certificate and its key, or --cert-bootstrap-secret") from None
    servers = [_listen(settings.listen, "--listen", app, reloader, limits)]
    if settings.metrics_listen is not None:
        try:
            servers.append(_listen(settings.metrics_listen, "--metrics-listen", app, None, limits))
        except ConfigError:
            servers[0].server_close()
            raise
    if ready:
        app.ready.set()
        metrics.ready.set(1)
    return servers


def _listen(address: tuple[str, int], flag: str, app: WebhookApp, reloader: CertificateReloader | None,
            limits: Limits | None) -> WebhookServer:
    try:
        return WebhookServer(address, app, reloader, webhook=reloader is not None, limits=limits)
    except OSError as err:
        raise ConfigError(f"{flag}: cannot listen on {address[0]}:{address[1]}: {err.strerror or err}") from None


def _keeper(settings: ServeSettings, reader: KubeReader, config: KubeConfig,
            app: WebhookApp, metrics: InjectorMetrics) -> CertificateKeeper | None:
    """Certificate bootstrap: makes the certificate (retrying until it can), then renews it; ready once made."""
    if settings.bootstrap is None:
        return None
    bootstrap = settings.bootstrap
    if not bootstrap.namespace:
        bootstrap = dataclasses.replace(bootstrap, namespace=default_namespace(config))

    def ready() -> None:
        app.ready.set()
        metrics.ready.set(1)

    return CertificateKeeper(CertificateBootstrap(reader, bootstrap), bootstrap.check_interval, on_success=ready)


def run_serve(args: argparse.Namespace, env: Mapping[str, str], options: SidecarOptions,
              static_config: KatibConfig | None) -> int:
    settings = settings_from(args, env)
    limits = limits_from(args)
    images = registry_client(args)
    config = kube_config(settings.kubeconfig, env)
    reader = KubeReader.connect(config, settings.api_timeout)
    resolver = ApiResolver(reader, katib_namespace=settings.katib_namespace, static_config=static_config,
                           ttl=settings.cache_ttl, images=images)
    if settings.bootstrap is not None:
        write_placeholder(settings.bootstrap.cert_dir)  # served, never trusted, until the real one is made
    metrics = InjectorMetrics()
    servers = build_servers(settings, resolver, options, metrics, ready=settings.bootstrap is None, limits=limits)
    keeper = _keeper(settings, reader, config, servers[0].app, metrics)
    stop = threading.Event()
    # Start-up objects (modules, clients, config, certificates) live as long as the process: frozen, they are
    # no longer scanned by full collections, which otherwise pause every admission for tens of milliseconds.
    gc.freeze()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for server in servers:
        start_in_thread(server)
        log.info("listening on %s:%d", *server.server_address[:2])
    if keeper is not None:
        keeper.start()
    stop.wait()
    if keeper is not None:
        keeper.stop()
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0
