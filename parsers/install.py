"""The pip command that installs an optional extra from where the user is: this checkout, or the index."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__all__ = ["install_command"]

_NAME = 'name = "katib-metrics-collector"'


def _checkout() -> Path | None:
    """The source tree this package runs from (an editable install), if it is one."""
    root = Path(__file__).resolve().parents[1]
    project = root / "pyproject.toml"
    try:
        return root if _NAME in project.read_text(encoding="utf-8") else None
    except OSError:
        return None


def install_command(extra: str, *, cwd: Path | None = None) -> str:
    """`pip install -e '.[extra]'` in a checkout (its path when elsewhere), else the package from the index."""
    root = _checkout()
    if root is None:
        return f"pip install 'katib-metrics-collector[{extra}]'"
    here = (cwd or Path(os.getcwd())).resolve()
    where = "." if here == root else str(root)
    return f"pip install -e {shlex.quote(f'{where}[{extra}]')}"
