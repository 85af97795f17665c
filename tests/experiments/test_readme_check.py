"""README "Before you submit": the `console` transcripts and the shown `check` output are what the commands print."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Before you submit\n", 1)[1].split("\n## ", 1)[0]


def _check(command: str) -> subprocess.CompletedProcess[str]:
    args = shlex.split(command)
    assert args[:2] == ["katib-metrics", "check"]
    return subprocess.run([sys.executable, "-m", "katib_metrics", *args[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_console_transcripts_are_what_check_prints() -> None:
    transcripts = re.findall(r"```console\n\$ (.*?)\n(.*?)```", SECTION, flags=re.S)
    assert transcripts
    for command, shown in transcripts:
        done = _check(command)
        assert done.stdout == shown, command
        assert done.returncode == (0 if shown.splitlines()[-1].startswith("OK:") else 1)


def test_the_shown_output_follows_its_sh_example() -> None:
    pairs = re.findall(r"```sh\n(katib-metrics check [^\n]*)\n```\n\n```\n(.*?)```", SECTION, flags=re.S)
    assert pairs
    for command, shown in pairs:
        done = _check(command)
        assert (done.returncode, done.stdout) == (0, shown)
