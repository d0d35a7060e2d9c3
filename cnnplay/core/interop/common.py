"""What export and import share: which networks can leave, file names."""

from __future__ import annotations

import os

from ..network import Network
from .errors import InteropError


def check_exportable(net: Network, path: str | os.PathLike | None = None) -> None:
    """A network with an invalid layer is not exported (the file would silently
    lack the layers from the invalid one on)."""
    if not isinstance(net, Network):
        raise InteropError(f"expected a cnnplay Network, not {type(net).__name__}",
                           None if path is None else os.fspath(path))
    if net.error is not None:
        e = net.error
        raise InteropError(f"fix the invalid layer before exporting ({e})",
                           None if path is None else os.fspath(path), layer=e.layer, layer_type=e.layer_type)


def node_name(net: Network, i: int) -> str:
    """The readable name of layer i in exported files: 'conv2d_0', 'relu_1', ..."""
    return f"{net.layer_types[i].name}_{i}"
