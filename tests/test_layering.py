"""The architecture rule is a test: parsers is the leaf; collector and injector never import each other."""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("parsers", "collector", "injector", "katib_metrics")  # the first three are katib_metrics.<name>
FORBIDDEN = {
    "parsers": {"collector", "injector", "katib_metrics"},
    "collector": {"injector", "katib_metrics"},
    "injector": {"collector", "katib_metrics"},
}


def _layer(module: str) -> str:
    """`katib_metrics.parsers.cli` → `parsers`; `katib_metrics` or `katib_metrics.cli` → `katib_metrics` (the
    app shell); anything else → its top-level name."""
    parts = module.split(".")
    if parts[0] == "katib_metrics" and len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return parts[0]


def _imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(_layer(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(_layer(node.module))
    return roots


def test_no_module_imports_a_bare_top_level_package_of_ours() -> None:
    # Installed, only `katib_metrics` exists: `import parsers` would work from a checkout and fail from the wheel.
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in PACKAGES[:3]]
    assert not offenders, "import through katib_metrics.*:\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layering_allows(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {sorted(_imported_roots(path) & FORBIDDEN[package])}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imported_roots(path) & FORBIDDEN[package]
    ]
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_parsers_imports_only_stdlib_regex_and_protobuf() -> None:
    # protobuf (`google.protobuf`) and google_crc32c are for event files only, imported lazily there; yaml
    # (a base dependency) only when an Experiment file is not JSON.
    allowed = set(sys.stdlib_module_names) | {"parsers", "regex", "google_crc32c", "google", "yaml", "__future__"}
    offenders = [
        f"{path.relative_to(ROOT)}: {sorted(_imported_roots(path) - allowed)}"
        for path in sorted((ROOT / "parsers").rglob("*.py"))
        if "_generated" not in path.parts and _imported_roots(path) - allowed
    ]
    assert not offenders, "parsers must stay light:\n" + "\n".join(offenders)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is a test dependency")
def test_import_linter_contracts_hold(tmp_path: pathlib.Path) -> None:
    # import-linter reads packages from disk and cannot follow pyproject's package-dir mapping, so it is shown the
    # installed layout: katib_metrics/ with parsers/, collector/ and injector/ inside.
    tree = tmp_path / "katib_metrics"
    shutil.copytree(ROOT / "katib_metrics", tree, ignore=shutil.ignore_patterns("__pycache__"))
    for package in PACKAGES[:3]:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(["lint-imports", "--config", str(ROOT / "pyproject.toml")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout
