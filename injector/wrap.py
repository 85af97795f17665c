"""Rewrites the training container's command so the sidecar can tell when and how training ended (pure).

The original argv is never pasted into a shell string: it is passed to `sh -c WRAPPER sh ARGV...` as
positional parameters and run as `"$@"`, so every argument reaches the training process byte for byte
and kubelet expands its `$(VAR)` references exactly as it would have without injection. Only the wrapper
script, which is ours, is escaped for kubelet (`$` → `$$`); that is where Katib's `$$$$.pid` comes from.

What the wrapper guarantees (DESIGN difference 8):
- exit status is the training's; `completed` is written to `<dir>/$$.pid` only on success;
- with early-stopping rules, a training killed after the sidecar wrote `early-stopped` exits 0 and the
  marker is overwritten with `completed`, as Katib's shell chain does;
- kind StdOut: stdout and stderr go to the metrics file *and* the container log (a `tee` that is not a
  child of the wrapper, so the training stays the wrapper's only child, as Katib's early stopping needs);
- the training runs in the foreground, so it sees the signal dispositions and stdin it would see alone.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["WrapSpec", "escape_for_kubelet", "kubelet_expand", "wrap_command", "wrapper_script"]

WRAPPER_NAME = "sh"


@dataclass(frozen=True, slots=True)
class WrapSpec:
    """Where the marker goes and whether output is captured."""

    marker_dir: str
    metrics_file: str | None = None  # kind StdOut only: where stdout/stderr are copied
    early_stopping: bool = False


def escape_for_kubelet(text: str) -> str:
    """Text that kubelet's `$(VAR)` expansion turns back into `text`."""
    return text.replace("$", "$$")


def kubelet_expand(text: str, env: Mapping[str, str]) -> str:
    """Kubelet's expansion of a container's command/args (`third_party/forked/golang/expansion`).

    `$$` → `$`; `$(NAME)` → the value when NAME is defined, else kept verbatim (whatever it contains);
    an unterminated `$(` and any other `$x` are kept; a trailing `$` is kept. Works on UTF-8 bytes
    as Go does, including its quirk of re-encoding the byte after a lone `$` as a code point.
    """
    data = text.encode("utf-8")
    out = bytearray()
    checkpoint = 0
    cursor = 0
    while cursor < len(data):
        if data[cursor] == 0x24 and cursor + 1 < len(data):  # '$'
            out += data[checkpoint:cursor]
            nxt = data[cursor + 1]
            advance = 1
            if nxt == 0x24:
                out += b"$"
            elif nxt == 0x28:  # '('
                close = data.find(b")", cursor + 2)
                if close < 0:
                    out += b"$("
                else:
                    name = data[cursor + 2:close].decode("utf-8", "surrogateescape")
                    value = env.get(name)
                    out += (f"$({name})" if value is None else value).encode("utf-8", "surrogateescape")
                    advance = close - cursor
            else:
                out += b"$" + chr(nxt).encode("utf-8")
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out += data[checkpoint:]
    return out.decode("utf-8", "surrogateescape")


def _finish(marker: str, early_stopping: bool) -> str:
    done = f"echo completed > {marker}"
    if not early_stopping:
        return f"if [ $s -eq 0 ]; then {done}; fi; exit $s"
    return (
        f"if [ $s -eq 0 ]; then {done}; exit 0; fi; "
        f"m=; read -r m 2>/dev/null < {marker}; "
        f"if [ \"$m\" = early-stopped ]; then echo Training Container was Early Stopped; {done}; exit 0; fi; "
        "echo Training Container was Failed; exit $s"
    )


def _run(redirect: str) -> str:
    # In the foreground on purpose: an asynchronous list would start the training with SIGINT/SIGQUIT
    # ignored (POSIX, job control off), which it would not see without injection.
    return f'"$@"{redirect}; s=$?; '


def _stdout_capture(marker_dir: str, metrics_file: str) -> str:
    """Run the training with output teed to the metrics file through a FIFO read by an orphaned `tee`.

    The `tee` shell removes both FIFOs once both of their ends are open, so that after the training the
    wrapper runs builtins only: any process left below it is the training's (collector.stopper).
    """
    fifo = shlex.quote(marker_dir.rstrip("/") + "/.katib-tee") + "-$$"
    file = shlex.quote(metrics_file)
    tee = shlex.quote('{ rm -f "$2"; tee "$1"; } < "$2"; exec 3> "$3"; rm -f "$3"; exec 3>&-')
    return (
        f"p={fifo}; rm -f \"$p.out\" \"$p.done\"; "
        f"if command -v tee >/dev/null 2>&1 && mkfifo \"$p.out\" \"$p.done\" 2>/dev/null; then "
        f"( sh -c {tee} katib-tee {file} \"$p.out\" \"$p.done\" & ); "
        + _run(' > "$p.out" 2>&1')
        + 'read -r t < "$p.done"; '
        "else "
        + _run(f" > {file} 2>&1")
        + "fi; "
    )


def wrapper_script(spec: WrapSpec) -> str:
    """The wrapper as the shell sees it (before kubelet escaping)."""
    directory = spec.marker_dir.rstrip("/")
    marker = (shlex.quote(directory) if directory else "") + "/$$.pid"
    capture = spec.metrics_file is not None
    body = _stdout_capture(spec.marker_dir, spec.metrics_file or "") if capture else _run("")
    return body + _finish(marker, spec.early_stopping)


def wrap_command(argv: Sequence[str], spec: WrapSpec) -> tuple[list[str], list[str]]:
    """(command, args) for the wrapped container; `argv` is the container's own command + args, unexpanded."""
    if not argv:
        raise ValueError("cannot wrap an empty command")
    return ["sh", "-c"], [escape_for_kubelet(wrapper_script(spec)), WRAPPER_NAME, *argv]
