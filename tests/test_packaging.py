"""`pip install .` must install every package folder and every bundled file:
pyproject.toml lists them explicitly, so a new folder or file type must be added there."""

from __future__ import annotations

import fnmatch
import pathlib

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _setuptools():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    listed = set(_setuptools()["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cnnplay").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert not found - listed, f"add to pyproject.toml packages: {sorted(found - listed)}"


def test_every_bundled_resource_is_installed():
    st = _setuptools()
    listed, data = set(st["packages"]), st.get("package-data", {})
    missing = []
    for f in (ROOT / "resources").rglob("*"):
        if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".py":
            continue
        pkg = ".".join(("cnnplay", "resources") + f.parent.relative_to(ROOT / "resources").parts)
        patterns = data.get(pkg, [])
        if pkg not in listed or not any(fnmatch.fnmatch(f.name, p) for p in patterns):
            missing.append(str(f.relative_to(ROOT)))
    assert not missing, f"not installed by pip install . (pyproject packages / package-data): {missing}"
