"""Installing tunelab adds one import name, `tunelab`, and every source file under it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the wheel in a subprocess

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = {"tunelab": "tunelab", "models": "tunelab.models"}
SOURCE_FOLDERS |= {"objectives": "tunelab.objectives", "search": "tunelab.search"}
"""Repository folder -> the package it installs as."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel `pip install .` would install, built from a copy of the sources (a build
    leaves folders behind)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("tunelab-*.whl")
    return zipfile.ZipFile(path)


def _expected_files() -> set[str]:
    files = set()
    for folder, package in SOURCE_FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            inside = path.relative_to(ROOT / folder).as_posix()
            files.add(f"{package.replace('.', '/')}/{inside}")
    return files


def test_the_wheel_installs_one_top_level_name(wheel):
    names = {
        n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")
    }
    assert names == {"tunelab"}
    (top_level,) = [n for n in wheel.namelist() if n.endswith("top_level.txt")] or [None]
    if top_level:  # setuptools writes it; its content must agree
        assert wheel.read(top_level).decode().split() == ["tunelab"]


def test_every_source_file_is_in_the_wheel(wheel):
    missing = _expected_files() - set(wheel.namelist())
    assert not missing, f"not packaged (add the package to pyproject.toml): {sorted(missing)}"


def test_every_package_folder_is_declared():
    from setuptools.config.pyprojecttoml import read_configuration

    declared = set(read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["packages"])
    for folder, package in SOURCE_FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            inside = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((package, *inside)) in declared, init


def test_generic_names_are_not_importable_outside_the_repository(tmp_path):
    for name in ("models", "objectives", "search"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, timeout=60
        )
        assert result.returncode != 0, f"'import {name}' works outside the repository"


def test_running_from_the_repository_root_loads_each_module_once():
    code = (
        "import sys, tunelab.search.cli, tunelab.objectives.runner; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('models', 'objectives', 'search')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # nothing loaded twice under a generic name
