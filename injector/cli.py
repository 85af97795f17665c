"""`katib-metrics injector serve|mutate`: reads argv and the environment, configures logging, runs the command."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from katib_metrics.injector.config import KatibConfig, load_katib_config
from katib_metrics.injector.errors import DeniedError, InjectorError
from katib_metrics.injector.mutate import Resolved, mutate_pod
from katib_metrics.injector.patch import json_patch
from katib_metrics.injector.settings import SHIPPED_KATIB_CONFIG, db_manager_address
from katib_metrics.injector.sidecar import SidecarOptions
from katib_metrics.injector.trial import Trial, algorithm_from_object
from katib_metrics.parsers.safeyaml import load_yaml

__all__ = ["main"]


class UsageError(Exception):
    """A bad option or unreadable input file: exit status 2."""


def _add_sidecar_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sidecar")
    group.add_argument("--db-manager-address", metavar="HOST:PORT",
                       help="the sidecar's -s-db (default: Katib's rule from KATIB_DB_MANAGER_SERVICE_IP/"
                            "_NAMESPACE/_PORT and KATIB_CORE_NAMESPACE: katib-db-manager.kubeflow:6789)")
    group.add_argument("--native-sidecar", action="store_true",
                       help="inject the collector as a native sidecar (init container with restartPolicy: "
                            "Always; Kubernetes >= 1.29) so it starts before training")
    group.add_argument("--sidecar-metrics-port", type=int, default=0, metavar="PORT",
                       help="pass --metrics-port PORT to the sidecar (our collector image only; Katib's images "
                            "reject the flag). 0 (default) keeps the sidecar args exactly Katib's")
    group.add_argument("--no-sidecar-security-context", action="store_true",
                       help="do not give the sidecar the restrictive securityContext (read-only root, no "
                            "privilege escalation, all capabilities dropped, the training's user)")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The Katib pod admission webhook and its offline twin.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    mutate = commands.add_parser(
        "mutate", help="print the pod the webhook would admit, from local YAML files (no cluster needed)",
        description="Print the mutated Pod as YAML: exactly what `injector serve` would admit for this pod.")
    mutate.add_argument("--trial", required=True, metavar="TRIAL.yaml", help="the Trial that owns the pod")
    mutate.add_argument("--pod", required=True, metavar="POD.yaml", help="the pod as created by the trial's job")
    mutate.add_argument("--config", metavar="KATIB_CONFIG.yaml",
                        help="the KatibConfig document or the katib-config ConfigMap (default: Katib's shipped "
                             "collectors: file-metrics-collector and tfevent-metrics-collector)")
    mutate.add_argument("--experiment", metavar="EXPERIMENT.yaml",
                        help="the Experiment (or Suggestion): its algorithm names the early-stopping service; "
                             "required when the trial has earlyStoppingRules")
    mutate.add_argument("--namespace", default="", help="the pod's namespace (default: the trial's)")
    mutate.add_argument("--output", choices=("yaml", "patch"), default="yaml",
                        help="yaml: the mutated pod (default); patch: the JSON patch the webhook would return")
    _add_sidecar_options(mutate)
    from katib_metrics.injector.serve_cli import add_serve_parser  # the server's options live next to its wiring

    add_serve_parser(commands, _add_sidecar_options)
    return parser


# Where a document of each kind belongs, to name the mix-up when one is given to the wrong option.
_OPTION_FOR_KIND = {"Trial": "--trial", "Pod": "--pod", "Experiment": "--experiment", "Suggestion": "--experiment",
                    "ConfigMap": "--config", "KatibConfig": "--config"}


def check_kind(document: Mapping[str, Any], path: str, option: str, accepted: Sequence[str]) -> None:
    """A document whose `kind:` is not one `option` takes is a usage error naming the option it belongs to."""
    kind = document.get("kind")
    if kind is None or kind in accepted:
        return
    belongs = _OPTION_FOR_KIND.get(str(kind))
    hint = f": pass it as {belongs}" if belongs and belongs != option else ""
    raise UsageError(f"{option} {path} holds {_a(str(kind))}, not {' or '.join(map(_a, accepted))}{hint}")


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in 'AEIOU' else 'a'} {kind}"


def _read_yaml(path: str, what: str, option: str, accepted: Sequence[str]) -> Mapping[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {what} file {path}: {err.strerror or err}") from err
    try:
        document = load_yaml(text)
    except yaml.YAMLError as err:
        raise UsageError(f"{what} file {path} is not valid YAML: {err}") from err
    if not isinstance(document, Mapping):
        raise UsageError(f"{what} file {path} must hold one {what} object (a YAML mapping)")
    check_kind(document, path, option, accepted)
    return document


def sidecar_options(args: argparse.Namespace, env: Mapping[str, str]) -> SidecarOptions:
    if not 0 <= args.sidecar_metrics_port <= 65535:
        raise UsageError(f"--sidecar-metrics-port must be 0..65535, got {args.sidecar_metrics_port}")
    address = args.db_manager_address
    host, _, port = (address or "").rpartition(":")
    if address is not None and not (host and port.isdigit() and 0 < int(port) < 65536 and " " not in host):
        raise UsageError(f"--db-manager-address {address!r} is not HOST:PORT (e.g. katib-db-manager.kubeflow:6789)")
    return SidecarOptions(
        db_manager_address=args.db_manager_address or db_manager_address(env),
        native_sidecar=args.native_sidecar,
        metrics_port=args.sidecar_metrics_port,
        restricted_security=not args.no_sidecar_security_context,
    )


def read_katib_config(path: str | None, option: str = "--config") -> KatibConfig:
    if path is None:
        return load_katib_config(SHIPPED_KATIB_CONFIG, "Katib's shipped katib-config")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read katib-config file {path}: {err.strerror or err}") from err
    try:
        document = load_yaml(text)
    except yaml.YAMLError:
        document = None  # load_katib_config names the YAML error
    if isinstance(document, Mapping):
        check_kind(document, path, option, ("KatibConfig", "ConfigMap"))
    return load_katib_config(text, path)


def _run_mutate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    trial = Trial.from_object(_read_yaml(args.trial, "Trial", "--trial", ("Trial",)))
    pod = _read_yaml(args.pod, "Pod", "--pod", ("Pod",))
    config = read_katib_config(args.config)
    algorithm = algorithm_from_object(
        _read_yaml(args.experiment, "Experiment", "--experiment", ("Experiment", "Suggestion"))) \
        if args.experiment else None
    try:
        mutation = mutate_pod(pod, trial, config, sidecar_options(args, env), Resolved(algorithm=algorithm),
                              args.namespace)
    except DeniedError as err:
        print(f"injector mutate: the webhook would deny this pod: {err}", file=sys.stderr)
        return 1
    if args.output == "patch":
        print(json.dumps(json_patch(dict(pod), mutation.pod), indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(mutation.pod, sort_keys=False, width=1 << 20))
    return 0


def main(argv: list[str], prog: str) -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: missing command: use `{prog} mutate` (see what the webhook does to a pod) or "
              f"`{prog} serve` (run the webhook); `{prog} --help` describes both", file=sys.stderr)
        return 2
    writer = _configure_logging(os.environ.get("KATIB_INJECTOR_LOG_LEVEL", "INFO").upper(),
                                queued=args.command == "serve")
    try:
        if args.command == "mutate":
            return _run_mutate(args, os.environ)
        from katib_metrics.injector.serve_cli import run_serve

        config = read_katib_config(args.katib_config, "--katib-config") if args.katib_config else None
        return run_serve(args, os.environ, sidecar_options(args, os.environ), config)
    except (UsageError, InjectorError) as err:
        print(f"{prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if writer is not None:
            writer.stop()  # writes what is still queued


class _DeferredQueueHandler(logging.handlers.QueueHandler):
    """Queues records unformatted: formatting and the write to stderr happen on the writer thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        return record


class _LogWriter(threading.Thread):
    """Writes queued records every `period` seconds. Polling, not waiting on the queue: a put then never wakes
    a thread, which under load cost more than the logging itself."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], handler: logging.Handler,
                 period: float = 0.05) -> None:
        super().__init__(name="log-writer", daemon=True)
        self._records, self._handler, self._period = records, handler, period
        self._stopping = threading.Event()

    def _drain(self) -> None:
        while not self._records.empty():
            self._handler.handle(self._records.get_nowait())

    def run(self) -> None:
        while not self._stopping.wait(self._period):
            self._drain()
        self._drain()

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def _configure_logging(level: str, queued: bool) -> _LogWriter | None:
    """stderr logging; for `serve` through a writer thread, so that an admission never waits on a slow or full
    log pipe (the container runtime's) while holding the handler's lock."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not queued:
        logging.basicConfig(level=level, handlers=[stream])
        return None
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logging.basicConfig(level=level, handlers=[_DeferredQueueHandler(records)])
    writer = _LogWriter(records, stream)
    writer.start()
    return writer


def entry(argv: Sequence[str] | None = None) -> int:
    """Run as `python -m injector.cli` (tests, debugging)."""
    return main(list(sys.argv[1:] if argv is None else argv), "katib-metrics injector")


if __name__ == "__main__":
    sys.exit(entry())
