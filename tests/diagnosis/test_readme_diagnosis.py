"""The diagnosis the README shows is what `katib-metrics parse` prints (the README test runs the command)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "katib-metrics parse examples/logs/keras.log -m val_accuracy"


def test_the_readme_shows_the_real_diagnosis() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(rf"```sh\n{re.escape(COMMAND)}\n```\n\n```\n(.*?)```", readme, flags=re.S)
    assert shown is not None, "the README's diagnosis example moved"
    done = subprocess.run([sys.executable, "-m", "katib_metrics", *COMMAND.split()[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    printed = [line for line in done.stderr.splitlines() if not line.endswith("values recorded")]
    assert printed == shown.group(1).splitlines()
