"""The wheel owns exactly one top-level import name, `katib_metrics`, and builds without deprecation warnings."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ("parsers", "collector", "injector", "katib_metrics", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    result = subprocess.run([sys.executable, "-W", "default", "-c", build], cwd=src, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1], result.stdout + result.stderr


def test_the_only_top_level_package_is_katib_metrics(wheel: tuple[pathlib.Path, str]) -> None:
    names = zipfile.ZipFile(wheel[0]).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"katib_metrics"}
    for sub in ("parsers", "collector", "injector"):
        assert f"katib_metrics/{sub}/__init__.py" in names
    assert "katib_metrics/collector/report/api.proto" in names
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:  # setuptools writes it; its content is what pip and tools believe we own
        assert zipfile.ZipFile(wheel[0]).read(top_level[0]).decode().split() == ["katib_metrics"]


def test_building_prints_no_deprecation_or_packaging_warning(wheel: tuple[pathlib.Path, str]) -> None:
    noisy = [line for line in wheel[1].splitlines()
             if "eprecat" in line or "is absent from the `packages`" in line or "License classifiers" in line]
    assert not noisy, "\n".join(noisy)


def test_the_wheel_imports_in_isolation(wheel: tuple[pathlib.Path, str], tmp_path: pathlib.Path) -> None:
    # Unpacked alone on sys.path (no checkout beside it): every subpackage imports through katib_metrics.
    zipfile.ZipFile(wheel[0]).extractall(tmp_path)
    probe = "import katib_metrics.parsers, katib_metrics.parsers.cli; print(katib_metrics.parsers.__file__)"
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {probe}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(tmp_path))
