"""The process table the sidecar reads: `/proc` in a pod, or any `ProcessTable` a test injects."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ProcFS", "ProcessInfo", "ProcessTable", "pipe_holders"]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    cmdline: str  # argv joined by single spaces, empty elements dropped (as gopsutil does)
    name: str  # basename of argv[0], else the kernel's comm
    start: int = 0  # start time in clock ticks after boot (0 when unknown): orders candidates by age


class ProcessTable(Protocol):
    """The view of processes the wait needs; `ProcFS` reads it from a /proc directory."""

    def processes(self) -> list[ProcessInfo]: ...

    def alive(self, pid: int) -> bool: ...

    def open_pidfd(self, pid: int) -> int | None: ...


class ProcFS:
    """Processes from a /proc tree (injectable root); zombies count as exited."""

    def __init__(self, root: Path = Path("/proc")) -> None:
        self.root = root

    def processes(self) -> list[ProcessInfo]:
        found: list[ProcessInfo] = []
        for pid in sorted(int(entry.name) for entry in self._entries()):
            info = self._read(pid)
            if info is not None:
                found.append(info)
        return found

    def _entries(self) -> Iterable[os.DirEntry[str]]:
        try:
            with os.scandir(self.root) as it:
                return [entry for entry in it if entry.name.isdigit()]
        except OSError:
            return []

    def _read(self, pid: int) -> ProcessInfo | None:
        base = self.root / str(pid)
        try:
            stat = (base / "stat").read_text(encoding="utf-8", errors="replace")
            argv = (base / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone between listing and reading: not a candidate (Katib skips it too)
            return None
        comm, fields = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 2 or fields[0] == "Z":
            return None
        words = [arg.decode("utf-8", "replace") for arg in argv if arg]
        name = os.path.basename(words[0]) if words else comm
        start = int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else 0
        return ProcessInfo(pid, int(fields[1]), " ".join(words), name, start)

    def alive(self, pid: int) -> bool:
        try:
            stat = (self.root / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        state = stat[stat.rfind(")") + 2 :].split()[:1]
        return state != ["Z"] and state != ["X"]

    def open_pidfd(self, pid: int) -> int | None:
        """A pidfd wakes the wait the moment the process exits; only for the real /proc."""
        if self.root != Path("/proc") or not hasattr(os, "pidfd_open"):
            return None
        try:
            return os.pidfd_open(pid)
        except OSError:
            return None


def pipe_holders(fd: int, root: Path = Path("/proc")) -> list[ProcessInfo]:
    """Other processes that hold the pipe `fd` is one end of (either end), oldest first; best effort."""
    needle = f"pipe:[{os.fstat(fd).st_ino}]"
    table, found = ProcFS(root), []
    for entry in table._entries():
        if int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(link.path) for link in os.scandir(f"{entry.path}/fd")]
        except OSError:  # gone, or not ours to read
            continue
        if needle in links and (info := table._read(int(entry.name))) is not None:
            found.append(info)
    return sorted(found, key=lambda info: (info.start, info.pid))
