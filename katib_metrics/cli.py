"""Entry point of `katib-metrics`: picks the subcommand and hands the rest of argv to its package's cli."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from katib_metrics import version

# Subcommand → (module, function). Imported lazily so `parse` never pays for gRPC or YAML.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "parse": ("katib_metrics.parsers.cli", "main", "parse a log, JSON lines or event directory and print the metrics"),
    "check": ("katib_metrics.parsers.check_cli", "main", "will a Katib Experiment collect its objective? (from a log)"),
    "collect": ("katib_metrics.collector.cli", "collect_main", "the sidecar: Katib's collector flags, report via gRPC"),
    "run": ("katib_metrics.collector.cli", "run_main", "run a training command locally and collect its metrics"),
    "trials": ("katib_metrics.collector.trials_cli", "main", "the trials of the local store, best objective first"),
    "show": ("katib_metrics.collector.show_cli", "main", "a trial's metrics (several side by side): table, JSON, plot"),
    "db-manager": ("katib_metrics.collector.dbmanager.cli", "main", "a local Katib db-manager (gRPC) over SQLite"),
    "injector": ("katib_metrics.injector.cli", "main", "the admission webhook: `serve` or `mutate`"),
}

USAGE = "usage: katib-metrics [--version] [-h] COMMAND [ARGS...]"


def _help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [USAGE, "", "Katib-compatible metrics collection for hyperparameter-tuning trials.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "Run `katib-metrics COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"katib-metrics {version()}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(USAGE, file=sys.stderr)
        print(f"katib-metrics: error: unknown command {name!r} (choose from {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        from katib_metrics.parsers.install import install_command

        print(f"katib-metrics {name}: error: this command needs {err.name}, an optional dependency that is not "
              f"installed; install it with: {install_command('all')}", file=sys.stderr)
        return 2
    func: Callable[[list[str], str], int] = getattr(module, func_name)
    try:
        return func(args[1:], f"katib-metrics {name}")
    except BrokenPipeError:  # `katib-metrics parse ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit goes nowhere instead of failing again
        os.close(devnull)
        return 128 + signal.SIGPIPE  # what a shell shows for a tool ended by SIGPIPE (as a Go binary is)
