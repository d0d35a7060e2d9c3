"""Where the bundled resources are, installed (cnnplay.resources) or in a source tree (resources/)."""

from __future__ import annotations

from pathlib import Path

_SOURCE_TREE = Path(__file__).resolve().parent.parent / "resources"


def resource_dir() -> Path:
    try:
        import cnnplay.resources as pkg
        return Path(pkg.__file__).resolve().parent
    except ImportError:
        return _SOURCE_TREE


def resource(*parts: str) -> Path:
    """Path of a bundled file, e.g. resource('images', 'camera.png')."""
    return resource_dir().joinpath(*parts)
