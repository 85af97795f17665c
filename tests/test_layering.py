"""The architecture rule is a test: parsers is the leaf; collector and injector never import each other."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("parsers", "collector", "injector", "katib_metrics")
FORBIDDEN = {
    "parsers": {"collector", "injector", "katib_metrics"},
    "collector": {"injector", "katib_metrics"},
    "injector": {"collector", "katib_metrics"},
}


def _imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layering_allows(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {sorted(_imported_roots(path) & FORBIDDEN[package])}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imported_roots(path) & FORBIDDEN[package]
    ]
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_parsers_imports_only_stdlib_regex_and_protobuf() -> None:
    # protobuf (`google.protobuf`) and google_crc32c are for event files only, imported lazily there.
    allowed = set(sys.stdlib_module_names) | {"parsers", "regex", "google_crc32c", "google", "__future__"}
    offenders = [
        f"{path.relative_to(ROOT)}: {sorted(_imported_roots(path) - allowed)}"
        for path in sorted((ROOT / "parsers").rglob("*.py"))
        if "_generated" not in path.parts and _imported_roots(path) - allowed
    ]
    assert not offenders, "parsers must stay light:\n" + "\n".join(offenders)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is a test dependency")
def test_import_linter_contracts_hold() -> None:
    result = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
