"""`katib-metrics db-manager`: run the local Katib db-manager until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from katib_metrics.collector.dbmanager.server import AddressError, BindError, parse_listen, serve
from katib_metrics.collector.dbmanager.store import StoreError, default_db_path, resolve_db_path

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:6789"
STOP_GRACE_SECONDS = 5.0

_EPILOG = """\
Speaks Katib's gRPC API (api.v1.beta1.DBManager and grpc.health.v1.Health), so Katib's collectors,
the Katib SDK's report_metrics and `katib-metrics collect -s-db HOST:PORT` can report to it.
Rows are kept in an SQLite file shaped like Katib's observation_logs table and survive restarts.

The default address is loopback only: this is a local tool. Katib's own db-manager listens on
0.0.0.0:6789; use --listen 0.0.0.0:6789 to accept other machines or pods (there is no TLS or auth).

exit status: 0 after a clean stop (SIGTERM, SIGINT), 1 when the address cannot be bound or the
database cannot be opened, 2 on usage errors."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a local Katib db-manager (gRPC) that stores observation logs in SQLite.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"address to serve gRPC on; port 0 picks a free port (default: {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--db",
        metavar="FILE",
        default=None,
        help=f"SQLite database file, created if missing in an existing directory (default: {default_db_path()})",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr; debug logs every request (default: info)",
    )
    return parser


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM and SIGINT while inside; the previous handlers come back after."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str], prog: str) -> int:
    parser = _parser(prog)
    try:
        args = parser.parse_args(argv)
        parse_listen(args.listen)
    except SystemExit as exit_:  # argparse has printed usage and the error
        return int(exit_.code or 0)
    except AddressError as err:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        db_path = resolve_db_path(args.db)
    except StoreError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    # Handlers first, then the announcement: once "listening on" is printed, a stop signal is never lost.
    with _stop_on_signals(stop):
        try:
            running = serve(args.listen, db_path)
        except (BindError, StoreError) as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 1
        log.info("db-manager listening on %s:%d (database %s)", running.host, running.port, running.store.path)
        stop.wait()
    running.stop(STOP_GRACE_SECONDS)
    log.info("db-manager stopped")
    return 0
